/*
 * eventaudit._httpspeedups: the optional C twin of eventaudit.httpheaders.HeaderPairs.
 *
 * httptools calls the protocol's on_header once per header field of every request. As a
 * Python method that call is a frame, two len()s, a bytes.lower() and a tuple; here it is
 * one C call. The Python class stays the reference: tests/unit/test_httpheaders.py holds
 * this one to it. CPython C API only.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    PyObject *pairs;     /* list of (lower-case name, value) */
    Py_ssize_t size;     /* bytes counted since the last reset() */
    Py_ssize_t limit;
    PyObject *too_large; /* called once size is over limit; it is expected to raise */
    vectorcallfunc vectorcall;
    Py_ssize_t hosts;    /* Host fields seen */
    char expect_continue; /* an Expect: 100-continue field seen (any case); char for T_BOOL */
    PyObject *transfer_codings; /* the Transfer-Encoding fields' values joined with ",", or NULL */
    PyObject *noted;     /* tuple of the lower-case names whose first value goes to `first` */
    PyObject *first;     /* dict: noted name -> its first field's value, since the last reset() */
} HeaderPairs;

/* -1 (an error set) unless __init__ ran and the GC has not cleared the object. */
static int
ready(HeaderPairs *self)
{
    if (self->pairs == NULL || self->too_large == NULL || self->noted == NULL || self->first == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "HeaderPairs was not initialised");
        return -1;
    }
    return 0;
}

/* size += n, saturating (a count past PY_SSIZE_T_MAX is over any limit all the same). */
static void
add_size(HeaderPairs *self, Py_ssize_t n)
{
    self->size = n > PY_SSIZE_T_MAX - self->size ? PY_SSIZE_T_MAX : self->size + n;
}

static int
over_limit(HeaderPairs *self)
{
    if (self->size <= self->limit) {
        return 0;
    }
    PyObject *too_large = Py_NewRef(self->too_large);
    PyObject *result = PyObject_CallNoArgs(too_large);
    Py_DECREF(too_large);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* name.lower() for bytes: ASCII letters only; the same object when there is nothing to lower. */
static PyObject *
lower(PyObject *name)
{
    const char *s = PyBytes_AS_STRING(name);
    Py_ssize_t n = PyBytes_GET_SIZE(name);
    Py_ssize_t i = 0;
    while (i < n && !(s[i] >= 'A' && s[i] <= 'Z')) {
        i++;
    }
    if (i == n && PyBytes_CheckExact(name)) {  /* (bytes.lower() of a subclass is a bytes all the same) */
        return Py_NewRef(name);
    }
    PyObject *lowered = PyBytes_FromStringAndSize(NULL, n);
    if (lowered == NULL) {
        return NULL;
    }
    char *w = PyBytes_AS_STRING(lowered);
    memcpy(w, s, (size_t)i);
    for (; i < n; i++) {
        char c = s[i];
        w[i] = (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
    }
    return lowered;
}

static int
equals_lower(const char *s, Py_ssize_t n, const char *lower)
{
    Py_ssize_t m = (Py_ssize_t)strlen(lower);
    if (n != m) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') {
            c = (char)(c + ('a' - 'A'));
        }
        if (c != lower[i]) {
            return 0;
        }
    }
    return 1;
}

/* What the protocol looks at once the head is complete: Host, Expect, Transfer-Encoding. */
static int
note(HeaderPairs *self, PyObject *lowered, PyObject *value)
{
    const char *name = PyBytes_AS_STRING(lowered);
    Py_ssize_t n = PyBytes_GET_SIZE(lowered);
    if (n == 4 && memcmp(name, "host", 4) == 0) {
        self->hosts++;
    } else if (n == 6 && memcmp(name, "expect", 6) == 0) {
        if (equals_lower(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), "100-continue")) {
            self->expect_continue = 1;
        }
    } else if (n == 17 && memcmp(name, "transfer-encoding", 17) == 0) {
        if (self->transfer_codings == NULL) {
            self->transfer_codings = Py_NewRef(value);
        } else {
            Py_ssize_t a = PyBytes_GET_SIZE(self->transfer_codings), b = PyBytes_GET_SIZE(value);
            PyObject *joined = PyBytes_FromStringAndSize(NULL, a + 1 + b);
            if (joined == NULL) {
                return -1;
            }
            memcpy(PyBytes_AS_STRING(joined), PyBytes_AS_STRING(self->transfer_codings), (size_t)a);
            PyBytes_AS_STRING(joined)[a] = ',';
            memcpy(PyBytes_AS_STRING(joined) + a + 1, PyBytes_AS_STRING(value), (size_t)b);
            Py_SETREF(self->transfer_codings, joined);
        }
    }
    return 0;
}

/* first[name] = value for a noted name not seen yet in this request (the noted tuple's own key). */
static int
note_first(HeaderPairs *self, PyObject *lowered, PyObject *value)
{
    const char *name = PyBytes_AS_STRING(lowered);
    Py_ssize_t n = PyBytes_GET_SIZE(lowered);
    Py_ssize_t count = PyTuple_GET_SIZE(self->noted);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *wanted = PyTuple_GET_ITEM(self->noted, i);
        if (PyBytes_GET_SIZE(wanted) == n && memcmp(PyBytes_AS_STRING(wanted), name, (size_t)n) == 0) {
            PyObject *first = Py_NewRef(self->first);
            PyObject *kept = PyDict_SetDefault(first, wanted, value);  /* borrowed; the first value stays */
            Py_DECREF(first);
            return kept == NULL ? -1 : 0;
        }
    }
    return 0;
}

/* self(name, value): count the field, refuse past the limit, keep (name.lower(), value), note it. */
static PyObject *
pairs_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    HeaderPairs *self = (HeaderPairs *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 2 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_SetString(PyExc_TypeError, "HeaderPairs(name, value) takes two positional arguments");
        return NULL;
    }
    PyObject *name = args[0], *value = args[1];
    if (ready(self) < 0) {
        return NULL;
    }
    if (!PyBytes_Check(name) || !PyBytes_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "a header field's name and value must be bytes");
        return NULL;
    }
    add_size(self, PyBytes_GET_SIZE(name));
    add_size(self, PyBytes_GET_SIZE(value));
    add_size(self, 4);
    if (over_limit(self) < 0 || ready(self) < 0) {  /* too_large() ran Python code: still set up? */
        return NULL;
    }
    PyObject *lowered = lower(name);
    if (lowered == NULL) {
        return NULL;
    }
    if (note(self, lowered, value) < 0 || note_first(self, lowered, value) < 0) {
        Py_DECREF(lowered);
        return NULL;
    }
    PyObject *pair = PyTuple_Pack(2, lowered, value);
    Py_DECREF(lowered);
    if (pair == NULL) {
        return NULL;
    }
    PyObject *pairs = Py_NewRef(self->pairs);
    int failed = PyList_Append(pairs, pair);
    Py_DECREF(pairs);
    Py_DECREF(pair);
    if (failed) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
pairs_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    HeaderPairs *self = (HeaderPairs *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->vectorcall = pairs_vectorcall;  /* callable from the start: not set up, it says so */
    }
    return (PyObject *)self;
}

static int
pairs_init(HeaderPairs *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"limit", "too_large", "noted", NULL};
    Py_ssize_t limit;
    PyObject *too_large;
    PyObject *noted = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "nO|O:HeaderPairs", kwlist, &limit, &too_large, &noted)) {
        return -1;
    }
    if (!PyCallable_Check(too_large)) {
        PyErr_SetString(PyExc_TypeError, "too_large must be callable");
        return -1;
    }
    if (noted == NULL) {
        noted = PyTuple_New(0);
        if (noted == NULL) {
            return -1;
        }
    } else {
        Py_INCREF(noted);
    }
    if (!PyTuple_Check(noted)) {
        Py_DECREF(noted);
        PyErr_SetString(PyExc_TypeError, "noted must be a tuple of bytes");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(noted); i++) {
        PyObject *name = PyTuple_GET_ITEM(noted, i);
        if (!PyBytes_CheckExact(name)) {
            Py_DECREF(noted);
            PyErr_SetString(PyExc_TypeError, "noted must be a tuple of bytes");
            return -1;
        }
        const char *c = PyBytes_AS_STRING(name);
        for (Py_ssize_t j = 0; j < PyBytes_GET_SIZE(name); j++) {
            if (c[j] >= 'A' && c[j] <= 'Z') {
                Py_DECREF(noted);
                PyErr_SetString(PyExc_ValueError,
                                "noted names must be lower-case, as the fields' names are compared lowered");
                return -1;
            }
        }
    }
    PyObject *pairs = PyList_New(0);
    PyObject *first = PyDict_New();
    if (pairs == NULL || first == NULL) {
        Py_XDECREF(pairs);
        Py_XDECREF(first);
        Py_DECREF(noted);
        return -1;
    }
    Py_XSETREF(self->pairs, pairs);
    Py_XSETREF(self->first, first);
    Py_XSETREF(self->noted, noted);
    Py_XSETREF(self->too_large, Py_NewRef(too_large));
    self->limit = limit;
    self->size = 0;
    self->hosts = 0;
    self->expect_continue = 0;
    Py_CLEAR(self->transfer_codings);
    self->vectorcall = pairs_vectorcall;
    return 0;
}

static PyObject *
pairs_reset(HeaderPairs *self, PyObject *unused)
{
    PyObject *pairs = PyList_New(0);
    PyObject *first = PyDict_New();
    if (pairs == NULL || first == NULL) {
        Py_XDECREF(pairs);
        Py_XDECREF(first);
        return NULL;
    }
    Py_XSETREF(self->pairs, pairs);
    Py_XSETREF(self->first, first);
    self->size = 0;
    self->hosts = 0;
    self->expect_continue = 0;
    Py_CLEAR(self->transfer_codings);
    return Py_NewRef(pairs);
}

static PyObject *
pairs_count(HeaderPairs *self, PyObject *arg)
{
    Py_ssize_t n = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "count() takes a number of bytes, not a negative number");
        return NULL;
    }
    if (ready(self) < 0) {
        return NULL;
    }
    add_size(self, n);
    if (over_limit(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static int
pairs_traverse(HeaderPairs *self, visitproc visit, void *arg)
{
    Py_VISIT(self->pairs);
    Py_VISIT(self->too_large);
    Py_VISIT(self->first);
    return 0;
}

static int
pairs_clear(HeaderPairs *self)
{
    Py_CLEAR(self->pairs);
    Py_CLEAR(self->too_large);
    Py_CLEAR(self->transfer_codings);
    Py_CLEAR(self->noted);
    Py_CLEAR(self->first);
    return 0;
}

static void
pairs_dealloc(HeaderPairs *self)
{
    PyObject_GC_UnTrack(self);
    pairs_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
pairs_get_pairs(HeaderPairs *self, void *closure)
{
    if (self->pairs == NULL) {
        PyErr_SetString(PyExc_AttributeError, "pairs");
        return NULL;
    }
    return Py_NewRef(self->pairs);
}

static PyMethodDef pairs_methods[] = {
    {"reset", (PyCFunction)pairs_reset, METH_NOARGS,
     "reset() -> list: a new, empty list of pairs (returned) and the count back to 0, for the next request."},
    {"count", (PyCFunction)pairs_count, METH_O,
     "count(n): n more bytes of the request head (its target, say); past the limit, too_large() is called."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef pairs_members[] = {
    {"size", T_PYSSIZET, offsetof(HeaderPairs, size), READONLY, "bytes counted since the last reset()"},
    {"limit", T_PYSSIZET, offsetof(HeaderPairs, limit), READONLY, "the most bytes counted without too_large()"},
    {"hosts", T_PYSSIZET, offsetof(HeaderPairs, hosts), READONLY, "Host fields since the last reset()"},
    {"expect_continue", T_BOOL, offsetof(HeaderPairs, expect_continue), READONLY,
     "whether an Expect field said 100-continue (any case) since the last reset()"},
    {"transfer_codings", T_OBJECT, offsetof(HeaderPairs, transfer_codings), READONLY,
     "the Transfer-Encoding fields' values joined with b',' since the last reset(), or None"},
    {"first", T_OBJECT_EX, offsetof(HeaderPairs, first), READONLY,  /* (AttributeError while not set up) */
     "dict: each noted name that came since the last reset() -> its first field's value"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef pairs_getset[] = {
    {"pairs", (getter)pairs_get_pairs, NULL, "the (lower-case name, value) pairs since the last reset()", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject HeaderPairsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "eventaudit._httpspeedups.HeaderPairs",
    .tp_doc = "HeaderPairs(limit, too_large, noted=()): httptools' on_header, counting and keeping a request's header "
              "fields (see eventaudit.httpheaders.HeaderPairs, the reference).",
    .tp_basicsize = sizeof(HeaderPairs),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = pairs_new,
    .tp_init = (initproc)pairs_init,
    .tp_dealloc = (destructor)pairs_dealloc,
    .tp_traverse = (traverseproc)pairs_traverse,
    .tp_clear = (inquiry)pairs_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(HeaderPairs, vectorcall),
    .tp_methods = pairs_methods,
    .tp_members = pairs_members,
    .tp_getset = pairs_getset,
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "eventaudit._httpspeedups",
    "Optional C twin of eventaudit.httpheaders.HeaderPairs; the Python class is the reference.",
    -1,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__httpspeedups(void)
{
    if (PyType_Ready(&HeaderPairsType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "HeaderPairs", (PyObject *)&HeaderPairsType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
