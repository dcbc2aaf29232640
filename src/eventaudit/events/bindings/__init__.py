"""Protocol bindings: pure codecs between a CloudEvent and a protocol message.

A binding maps an event onto the parts of a message (HTTP headers and body; Kafka
key, headers and value) and back. It does no I/O and knows no client library: the
``transport`` layer moves the bytes and calls these functions, never the other way
round (the layering of cloudevents/sdk-go v2). Each binding picks the content mode
of an incoming message from the message itself, as its spec says.
"""
