"""The users service: accounts (create, read, list, update, delete) with a transactional outbox.

Every committed change writes one CloudEvent to the outbox in the same transaction; the
relay (:mod:`eventaudit.users.relay`) publishes the outbox to the sink. This package never
imports the audit service: the contract between them is the CloudEvent itself.
"""
