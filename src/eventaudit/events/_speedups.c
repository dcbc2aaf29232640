/*
 * eventaudit.events._speedups: optional C fast paths for the CloudEvents codec.
 *
 * Every function here is a shortcut for a pure-Python function that stays the
 * reference (see events/_accel.py). A shortcut either gives the answer the Python
 * code would give, or says "not sure" (False / None) and lets the Python code
 * decide. It never calls an invalid event valid, never misses a repeated JSON
 * member, and never builds attributes the Python loop would not build.
 *
 *   looks_valid(ev)            event.py _looks_valid: True when surely valid, else the
 *                              configured Python fallback decides
 *   post_init(ev)              CloudEvent.__post_init__ (via post_init_for): nothing to do for a
 *                              surely valid event, else the Python __post_init__ runs
 *   sure_valid(ev)             the C verdict alone (True = surely valid, False = not sure)
 *   is_timestamp(s)            types.is_timestamp, except that a leap second (:60) is "not sure"
 *   timestamp_micros(s)        types.timestamp_micros for a valid Timestamp that is no leap second
 *   surely_unique(raw, value)  formats/json.py _surely_unique: True when no JSON object in
 *                              raw repeats a member name
 *   json_event(raw, ...)       formats/json.py decode for the plain case (loads + _from_own_dict)
 *   event_from_dict(obj)       formats/json.py _from_own_dict for the plain case
 *   event_from_attributes(...) the CloudEvent(...) at the end of the binary-mode decoders
 *   find_header(pairs, name)   bindings/http.py _find
 *   http_attributes(pairs)     the ce- header loop of bindings/http.py _decode_binary
 *   latin1_pairs(raw)          bindings/http.py text_headers: bytes header pairs to str pairs
 *   kafka_attributes(headers)  bindings/kafka.py _read_headers, when it finds no failure
 *   sorted_json(ev)            formats/json.py encode_sorted: the JSON event format, compact, members
 *                              sorted (data values other than text and bytes by the configured encoder)
 *
 * The rules stay in Python: configure() hands over the caches of values the Python code
 * found valid (sources, media types, dataschemas), the reserved names and the data types;
 * tests/unit/events/test_speedups.py holds every function to its Python twin.
 *
 * CPython C API only; no third-party C dependencies.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__) && (defined(__GNUC__) || defined(__clang__))
#include <emmintrin.h>
#define SPEEDUPS_SSE2 1
#else
#define SPEEDUPS_SSE2 0
#endif

/* ------------------------------------------------------------------------------------------ */
/* Configuration: the Python objects that hold the rules (set by configure())                  */
/* ------------------------------------------------------------------------------------------ */

enum {
    F_SPECVERSION, F_ID, F_SOURCE, F_TYPE, F_DATACONTENTTYPE, F_DATASCHEMA,
    F_SUBJECT, F_TIME, F_EXTENSIONS, F_DATA, N_FIELDS
};

static const char *const field_names[N_FIELDS] = {
    "specversion", "id", "source", "type", "datacontenttype", "dataschema",
    "subject", "time", "extensions", "data",
};

static PyTypeObject *g_event_type = NULL;  /* CloudEvent */
static PyTypeObject *g_ext_type = NULL;    /* Extensions (a dict subclass) */
static PyObject *g_fallback = NULL;        /* event._looks_valid */
static PyObject *g_specversion = NULL;     /* "1.0" */
static PyObject *g_sources = NULL;         /* set of sources found valid */
static PyObject *g_media = NULL;           /* set of datacontenttypes found valid */
static PyObject *g_uris = NULL;            /* set of dataschemas found valid */
static PyObject *g_reserved = NULL;        /* frozenset of names no extension may take */
static PyObject *g_data_types = NULL;      /* frozenset of the types data may have */
static Py_ssize_t g_offsets[N_FIELDS];     /* slot offsets of the CloudEvent fields */
static int g_long_name = 20;               /* longer extension names go to Python (it warns) */
static PyObject *g_empty_ext = NULL;       /* EMPTY_EXTENSIONS */
static PyObject *g_kwnames = NULL;         /* the field names, as keyword names for the constructor */
static PyObject *g_field_str[N_FIELDS];    /* the field names as str */
static PyObject *g_header_members = NULL;  /* frozenset: the attributes the bindings take out */
static PyObject *g_str_data_base64 = NULL;
static PyObject *g_empty_tuple = NULL;
static PyObject *g_str_content_type = NULL;
static PyObject *g_post_init = NULL;       /* CloudEvent.__post_init__ as written in Python */
static PyObject *g_json_decode = NULL;     /* formats/json.py _decoder.decode */
static PyObject *g_sorted_encode = NULL;   /* formats/json.py _sorted_encoder.encode, for data values */
static int g_ext_plain_dict = 0;           /* Extensions(d) is dict(d) with another type */
static int g_post_init_shortcut = 1;       /* 0: post_init always runs the Python __post_init__ */
static int g_dict_view_ok = 0;             /* dict items views have the layout of DictView */

#define INT32_LO (-2147483647LL - 1)
#define INT32_HI 2147483647LL

static void
replace_ref(PyObject **slot, PyObject *value)
{
    Py_XINCREF(value);
    Py_XSETREF(*slot, value);
}

static PyObject *
configure(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {
        "event_type", "fallback", "specversion", "sources", "media", "uris",
        "reserved", "data_types", "extensions_type", "long_name", "empty_extensions", NULL,
    };
    PyObject *event_type, *fallback, *specversion, *sources, *media, *uris, *reserved, *data_types, *ext_type;
    PyObject *empty_ext;
    int long_name;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!OUO!O!O!O!O!O!iO:configure", kwlist,
                                     &PyType_Type, &event_type, &fallback, &specversion,
                                     &PySet_Type, &sources, &PySet_Type, &media, &PySet_Type, &uris,
                                     &PyFrozenSet_Type, &reserved, &PyFrozenSet_Type, &data_types,
                                     &PyType_Type, &ext_type, &long_name, &empty_ext)) {
        return NULL;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return NULL;
    }
    if (!PyType_IsSubtype((PyTypeObject *)ext_type, &PyDict_Type)) {
        PyErr_SetString(PyExc_TypeError, "extensions_type must be a dict subclass");
        return NULL;
    }
    Py_ssize_t offsets[N_FIELDS];
    PyTypeObject *tp = (PyTypeObject *)event_type;
    for (int i = 0; i < N_FIELDS; i++) {
        /* msgspec keeps Struct fields in slots: one member descriptor per field. */
        PyObject *descr = PyDict_GetItemString(tp->tp_dict, field_names[i]);
        if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a slot", tp->tp_name, field_names[i]);
            return NULL;
        }
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if ((member->type != T_OBJECT_EX && member->type != T_OBJECT) || member->offset <= 0 ||
            (size_t)member->offset + sizeof(PyObject *) > (size_t)tp->tp_basicsize) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not an object slot", tp->tp_name, field_names[i]);
            return NULL;
        }
        offsets[i] = member->offset;
    }
    memcpy(g_offsets, offsets, sizeof(offsets));
    replace_ref((PyObject **)&g_event_type, event_type);
    replace_ref((PyObject **)&g_ext_type, ext_type);
    replace_ref(&g_fallback, fallback);
    replace_ref(&g_specversion, specversion);
    replace_ref(&g_sources, sources);
    replace_ref(&g_media, media);
    replace_ref(&g_uris, uris);
    replace_ref(&g_reserved, reserved);
    replace_ref(&g_data_types, data_types);
    g_long_name = long_name;
    replace_ref(&g_empty_ext, empty_ext);
    g_ext_plain_dict = ((PyTypeObject *)ext_type)->tp_new == PyDict_Type.tp_new &&
                       ((PyTypeObject *)ext_type)->tp_init == PyDict_Type.tp_init;
    Py_RETURN_NONE;
}

/* Whether a dict's items view holds its dict where DictView says (see pairs_open). */
static int check_dict_view(void);

/* The field names as str, the keyword names tuple and the sets of member names (once). */
static int
init_names(void)
{
    g_dict_view_ok = check_dict_view();
    if (g_dict_view_ok < 0) {
        return -1;
    }
    PyObject *kwnames = PyTuple_New(N_FIELDS);
    PyObject *header = PySet_New(NULL);
    if (kwnames == NULL || header == NULL) {
        goto error;
    }
    for (int i = 0; i < N_FIELDS; i++) {
        PyObject *name = PyUnicode_InternFromString(field_names[i]);
        if (name == NULL) {
            goto error;
        }
        g_field_str[i] = Py_NewRef(name);
        PyTuple_SET_ITEM(kwnames, i, name);
        /* bindings: datacontenttype comes from content-type and data from the body. */
        if (i != F_EXTENSIONS && i != F_DATACONTENTTYPE && i != F_DATA && PySet_Add(header, name) < 0) {
            goto error;
        }
    }
    g_empty_tuple = PyTuple_New(0);
    g_str_data_base64 = PyUnicode_InternFromString("data_base64");
    g_str_content_type = PyUnicode_InternFromString("content-type");
    if (g_empty_tuple == NULL || g_str_data_base64 == NULL || g_str_content_type == NULL) {
        goto error;
    }
    g_header_members = PyFrozenSet_New(header);
    Py_CLEAR(header);
    if (g_header_members == NULL) {
        goto error;
    }
    g_kwnames = kwnames;
    return 0;
error:
    Py_XDECREF(kwnames);
    Py_XDECREF(header);
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* The type system                                                                             */
/* ------------------------------------------------------------------------------------------ */

/* ASCII characters U+0020-U+007E only; empty is fine (the caller decides). */
static inline int
printable_ascii(PyObject *s)
{
    if (!PyUnicode_IS_ASCII(s)) {
        return 0;
    }
    const unsigned char *p = (const unsigned char *)PyUnicode_DATA(s);
    Py_ssize_t n = PyUnicode_GET_LENGTH(s), i = 0;
    /* eight bytes at a time: ASCII already, so look for a byte below 0x20 or equal to 0x7f */
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        uint64_t below_space = (w - ones * 0x20) & ~w & highs;
        uint64_t x = w ^ (ones * 0x7f);
        uint64_t delete = (x - ones) & ~x & highs;
        if (below_space | delete) {
            return 0;
        }
    }
    for (; i < n; i++) {
        if (p[i] < 0x20 || p[i] > 0x7e) {
            return 0;
        }
    }
    return 1;
}

/* A non-empty String of printable ASCII: the plain case of spec.md#type-system String. */
static inline int
plain_string(PyObject *v)
{
    return v != NULL && PyUnicode_CheckExact(v) && PyUnicode_GET_LENGTH(v) > 0 && printable_ascii(v);
}

static inline int
two_digits(const unsigned char *p, int *out)
{
    if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9') {
        return 0;
    }
    *out = (p[0] - '0') * 10 + (p[1] - '0');
    return 1;
}

static int
days_in_month(int year, int month)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month == 2 && year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)) {
        return 29;
    }
    return days[month - 1];
}

/*
 * RFC 3339 §5.6 date-time: YYYY-MM-DD "T" hh:mm:ss [.fraction] ("Z" / +hh:mm / -hh:mm), "T" and
 * "Z" in either case, ASCII digits only, real days of the month.
 * 1: valid; 0: invalid; -1: a leap second (second 60), which this function does not judge.
 */
static int
timestamp_verdict(const unsigned char *s, Py_ssize_t n)
{
    int year_hi, year_lo, month, day, hour, minute, second;
    if (n < 20) {
        return 0;
    }
    if (!two_digits(s, &year_hi) || !two_digits(s + 2, &year_lo) || s[4] != '-' ||
        !two_digits(s + 5, &month) || s[7] != '-' || !two_digits(s + 8, &day) ||
        (s[10] != 'T' && s[10] != 't') || !two_digits(s + 11, &hour) || s[13] != ':' ||
        !two_digits(s + 14, &minute) || s[16] != ':' || !two_digits(s + 17, &second)) {
        return 0;
    }
    if (month < 1 || month > 12 || day < 1 || day > days_in_month(year_hi * 100 + year_lo, month) ||
        hour > 23 || minute > 59 || second > 60) {
        return 0;
    }
    Py_ssize_t i = 19;
    if (s[i] == '.') {
        Py_ssize_t start = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
        if (i == start || i >= n) {
            return 0;
        }
    }
    if (s[i] == 'Z' || s[i] == 'z') {
        if (i + 1 != n) {
            return 0;
        }
    }
    else if (s[i] == '+' || s[i] == '-') {
        int off_hour, off_minute;
        if (i + 6 != n || !two_digits(s + i + 1, &off_hour) || s[i + 3] != ':' ||
            !two_digits(s + i + 4, &off_minute) || off_hour > 23 || off_minute > 59) {
            return 0;
        }
    }
    else {
        return 0;
    }
    return second == 60 ? -1 : 1;
}

/* 1: a String that is surely a valid Timestamp; 0: not sure. */
static inline int
sure_timestamp(PyObject *v)
{
    return PyUnicode_CheckExact(v) && PyUnicode_IS_ASCII(v) &&
           timestamp_verdict((const unsigned char *)PyUnicode_DATA(v), PyUnicode_GET_LENGTH(v)) == 1;
}

static PyObject *
is_timestamp(PyObject *module, PyObject *value)
{
    if (!PyUnicode_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "is_timestamp() takes a str");
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(value)) {
        Py_RETURN_FALSE;  /* every character of the grammar is ASCII */
    }
    int verdict = timestamp_verdict((const unsigned char *)PyUnicode_DATA(value), PyUnicode_GET_LENGTH(value));
    if (verdict < 0) {
        Py_RETURN_NONE;
    }
    return PyBool_FromLong(verdict);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (types.py _days_from_civil, H. Hinnant's algorithm). */
static long long
days_from_civil(long long year, int month, int day)
{
    year -= month <= 2;
    long long era = (year >= 0 ? year : year - 399) / 400;  /* floor division, as Python's // */
    long long year_of_era = year - era * 400;
    long long day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    long long day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

/* types.py timestamp_micros for a valid Timestamp that is no leap second; None: not sure. */
static PyObject *
timestamp_micros(PyObject *module, PyObject *value)
{
    if (!PyUnicode_CheckExact(value) || !PyUnicode_IS_ASCII(value)) {
        Py_RETURN_NONE;
    }
    const unsigned char *s = (const unsigned char *)PyUnicode_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    if (timestamp_verdict(s, n) != 1) {
        Py_RETURN_NONE;
    }
    int year_hi = 0, year_lo = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;  /* all checked digits */
    two_digits(s, &year_hi);
    two_digits(s + 2, &year_lo);
    two_digits(s + 5, &month);
    two_digits(s + 8, &day);
    two_digits(s + 11, &hour);
    two_digits(s + 14, &minute);
    two_digits(s + 17, &second);
    long long seconds = days_from_civil(year_hi * 100 + year_lo, month, day) * 86400 + hour * 3600 +
                        minute * 60 + second;
    long long micros = 0;
    Py_ssize_t i = 20;
    for (int k = 0; k < 6; k++) {  /* the fraction's first six digits, padded with zeros */
        int digit = s[19] == '.' && i < n && s[i] >= '0' && s[i] <= '9';
        micros = micros * 10 + (digit ? s[i++] - '0' : 0);
    }
    if (s[n - 1] != 'Z' && s[n - 1] != 'z') {
        int off_hour = 0, off_minute = 0;
        two_digits(s + n - 5, &off_hour);
        two_digits(s + n - 2, &off_minute);
        seconds -= (s[n - 6] == '+' ? 1 : -1) * (off_hour * 3600LL + off_minute * 60LL);
    }
    return PyLong_FromLongLong(seconds * 1000000 + micros);
}

/* An extension name: [a-z0-9]{1,long_name}, not reserved. -1 on error. */
static int
sure_extension_name(PyObject *name)
{
    if (!PyUnicode_CheckExact(name) || !PyUnicode_IS_ASCII(name)) {
        return 0;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(name);
    if (n < 1 || n > g_long_name) {
        return 0;
    }
    const unsigned char *p = (const unsigned char *)PyUnicode_DATA(name);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9'))) {
            return 0;
        }
    }
    int reserved = PySet_Contains(g_reserved, name);
    return reserved < 0 ? -1 : !reserved;
}

/* String, Integer (signed 32 bits), Boolean or Binary. */
static int
sure_extension_value(PyObject *value)
{
    if (PyUnicode_CheckExact(value)) {
        return printable_ascii(value);  /* an empty String is a valid extension value */
    }
    if (PyLong_CheckExact(value)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow) {
            return 0;
        }
        if (v == -1 && PyErr_Occurred()) {
            return -1;
        }
        return v >= INT32_LO && v <= INT32_HI;
    }
    return PyBool_Check(value) || PyBytes_CheckExact(value);
}

static int
sure_extensions(PyObject *ext)
{
    if (!PyDict_CheckExact(ext) && !Py_IS_TYPE(ext, g_ext_type)) {
        return 0;
    }
    Py_ssize_t pos = 0;
    PyObject *name, *value;
    while (PyDict_Next(ext, &pos, &name, &value)) {
        int ok = sure_extension_name(name);
        if (ok <= 0) {
            return ok;
        }
        ok = sure_extension_value(value);
        if (ok <= 0) {
            return ok;
        }
    }
    return 1;
}

/* A set lookup for a value the Python fast path already found valid. */
static inline int
known(PyObject *cache, PyObject *value)
{
    return PyUnicode_CheckExact(value) ? PySet_Contains(cache, value) : 0;
}

#define FIELD(ev, i) (*(PyObject **)((char *)(ev) + g_offsets[i]))

/* 1: ev is surely a valid CloudEvent; 0: not sure; -1: error. */
static int
sure_valid_event(PyObject *ev)
{
    if (g_event_type == NULL || !Py_IS_TYPE(ev, g_event_type)) {
        return 0;
    }
    PyObject *v = FIELD(ev, F_SPECVERSION);
    if (v == NULL || !PyUnicode_CheckExact(v)) {
        return 0;
    }
    int eq = PyUnicode_Compare(v, g_specversion);
    if (eq != 0) {
        return eq == -1 && PyErr_Occurred() ? -1 : 0;
    }
    if (!plain_string(FIELD(ev, F_ID)) || !plain_string(FIELD(ev, F_TYPE))) {
        return 0;
    }
    int ok;
    v = FIELD(ev, F_SOURCE);
    if (v == NULL || (ok = known(g_sources, v)) <= 0) {
        return v == NULL ? 0 : ok;
    }
    v = FIELD(ev, F_DATACONTENTTYPE);
    if (v == NULL || (v != Py_None && (ok = known(g_media, v)) <= 0)) {
        return v == NULL ? 0 : ok;
    }
    v = FIELD(ev, F_DATASCHEMA);
    if (v == NULL || (v != Py_None && (ok = known(g_uris, v)) <= 0)) {
        return v == NULL ? 0 : ok;
    }
    v = FIELD(ev, F_SUBJECT);
    if (v == NULL || (v != Py_None && !plain_string(v))) {
        return 0;
    }
    v = FIELD(ev, F_TIME);
    if (v == NULL || (v != Py_None && !sure_timestamp(v))) {
        return 0;
    }
    v = FIELD(ev, F_EXTENSIONS);
    if (v == NULL) {
        return 0;
    }
    if (!(PyDict_Check(v) && PyDict_GET_SIZE(v) == 0) && (ok = sure_extensions(v)) <= 0) {
        return ok;
    }
    v = FIELD(ev, F_DATA);
    if (v == NULL) {
        return 0;
    }
    if (v == Py_None) {
        return 1;
    }
    return PySet_Contains(g_data_types, (PyObject *)Py_TYPE(v));
}

static PyObject *
looks_valid(PyObject *module, PyObject *ev)
{
    int ok = sure_valid_event(ev);
    if (ok < 0) {
        return NULL;
    }
    if (ok) {
        Py_RETURN_TRUE;
    }
    if (g_fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_speedups.configure() was not called");
        return NULL;
    }
    return PyObject_CallOneArg(g_fallback, ev);
}

/*
 * CloudEvent.__post_init__ (msgspec calls it with the new event): nothing to do when the
 * event is surely valid and its extensions are already an Extensions; otherwise the
 * Python __post_init__ runs.
 */
static PyObject *
post_init(PyObject *module, PyObject *ev)
{
    int ok = g_post_init_shortcut ? sure_valid_event(ev) : 0;
    if (ok < 0) {
        return NULL;
    }
    if (ok && Py_IS_TYPE(FIELD(ev, F_EXTENSIONS), g_ext_type)) {
        Py_RETURN_NONE;
    }
    if (g_post_init == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_speedups.post_init_for() was not called");
        return NULL;
    }
    return PyObject_CallOneArg(g_post_init, ev);
}

/* A decorator for CloudEvent.__post_init__: keeps the Python function, gives post_init. */
static PyObject *
post_init_for(PyObject *module, PyObject *fallback)
{
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "post_init_for() takes the Python __post_init__");
        return NULL;
    }
    replace_ref(&g_post_init, fallback);
    return PyObject_GetAttrString(module, "post_init");
}

/* Turns the C shortcut of post_init on or off (the tests compare both ways); returns the old setting. */
static PyObject *
post_init_shortcut(PyObject *module, PyObject *enabled)
{
    int on = PyObject_IsTrue(enabled);
    if (on < 0) {
        return NULL;
    }
    PyObject *before = PyBool_FromLong(g_post_init_shortcut);
    g_post_init_shortcut = on;
    return before;
}

static PyObject *
sure_valid(PyObject *module, PyObject *ev)
{
    int ok = sure_valid_event(ev);
    return ok < 0 ? NULL : PyBool_FromLong(ok);
}

/* ------------------------------------------------------------------------------------------ */
/* Repeated member names in JSON text                                                          */
/* ------------------------------------------------------------------------------------------ */

/*
 * One pass over JSON text that msgspec already accepted: tracks the open objects and
 * arrays, and puts every member name, keyed by the object it belongs to, into one hash
 * table. Names are compared as raw bytes, which is exact for names without a backslash
 * (valid UTF-8 has one encoding per string); a name with an escape, very deep nesting,
 * a long probe in the table or anything that does not look like JSON is "not sure".
 */

typedef struct {
    const unsigned char *name; /* NULL: free */
    Py_ssize_t len;
    uint64_t hash;
    uint64_t object;
} Entry;

typedef struct {
    Entry *entries;
    size_t mask;
    size_t used;
    int heap;
} Table;

#define STACK_ENTRIES 32
#define MAX_PROBE 32
#define MAX_DEPTH 1024
#define MAX_NAMES (1 << 20)

static inline uint64_t
name_hash(const unsigned char *p, Py_ssize_t n, uint64_t object)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ (object * 0x9e3779b97f4a7c15ULL);
    for (Py_ssize_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static int
table_grow(Table *t)
{
    size_t size = (t->mask + 1) * 2;
    Entry *fresh = PyMem_Calloc(size, sizeof(Entry));
    if (fresh == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i <= t->mask; i++) {
        Entry *e = &t->entries[i];
        if (e->name == NULL) {
            continue;
        }
        size_t j = (size_t)e->hash & (size - 1);
        while (fresh[j].name != NULL) {
            j = (j + 1) & (size - 1);
        }
        fresh[j] = *e;
    }
    if (t->heap) {
        PyMem_Free(t->entries);
    }
    t->entries = fresh;
    t->mask = size - 1;
    t->heap = 1;
    return 0;
}

/* 1: new name; 0: repeated or not sure; -1: error. */
static int
table_add(Table *t, const unsigned char *name, Py_ssize_t len, uint64_t object)
{
    if (t->used >= MAX_NAMES) {
        return 0;  /* a huge document: the exact Python check reads it */
    }
    if ((t->used + 1) * 2 > t->mask + 1 && table_grow(t) < 0) {
        return -1;
    }
    uint64_t h = name_hash(name, len, object);
    size_t j = (size_t)h & t->mask;
    for (int probe = 0; probe < MAX_PROBE; probe++) {
        Entry *e = &t->entries[j];
        if (e->name == NULL) {
            e->name = name;
            e->len = len;
            e->hash = h;
            e->object = object;
            t->used++;
            return 1;
        }
        if (e->hash == h && e->object == object && e->len == len && memcmp(e->name, name, (size_t)len) == 0) {
            return 0;
        }
        j = (j + 1) & t->mask;
    }
    return 0;
}

/*
 * The index of the quote that closes the string whose text starts at s[i], or n when it is
 * not closed. *escaped is set when the string holds a backslash escape.
 */
static inline Py_ssize_t
string_end(const unsigned char *s, Py_ssize_t i, Py_ssize_t n, int *escaped)
{
    for (;;) {
#if SPEEDUPS_SSE2
        const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
        while (i + 16 <= n) {
            __m128i chunk = _mm_loadu_si128((const __m128i *)(s + i));
            unsigned mask = (unsigned)_mm_movemask_epi8(
                _mm_or_si128(_mm_cmpeq_epi8(chunk, quote), _mm_cmpeq_epi8(chunk, backslash)));
            if (mask != 0) {
                i += __builtin_ctz(mask);
                break;
            }
            i += 16;
        }
#endif
        while (i < n && s[i] != '"' && s[i] != '\\') {
            i++;
        }
        if (i >= n) {
            return n;
        }
        if (s[i] == '"') {
            return i;
        }
        *escaped = 1;
        i += 2; /* the backslash and the escaped character, which may be a quote */
        if (i >= n) {
            return n;
        }
    }
}

/*
 * The common case without a hash table: each new name is compared with the names of its
 * own object (kept while the object is open). 1: no object repeats a member; 0: maybe one
 * does (or not sure); 2: an object with too many members for this, use scan_unique_hashed.
 */
#define LINEAR_NAMES 256
#define LINEAR_PER_OBJECT 24

typedef struct {
    const unsigned char *name;
    Py_ssize_t len;
} NameRef;

static int
scan_unique_linear(const unsigned char *s, Py_ssize_t n)
{
    NameRef names[LINEAR_NAMES];
    int first[MAX_DEPTH]; /* index in names[] of the first member of each open object; -1: array */
    int depth = 0, expect_name = 0, top = 0;
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned char c = s[i++];
        switch (c) {
        case '{':
        case '[':
            if (depth == MAX_DEPTH) {
                return 0;
            }
            first[depth++] = c == '{' ? top : -1;
            expect_name = c == '{';
            break;
        case '}':
        case ']':
            if (depth == 0 || (first[depth - 1] >= 0) != (c == '}')) {
                return 0;
            }
            depth--;
            if (first[depth] >= 0) {
                top = first[depth]; /* the object is closed: forget its names */
            }
            expect_name = 0;
            break;
        case ',':
            expect_name = depth > 0 && first[depth - 1] >= 0;
            break;
        case ':':
            expect_name = 0;
            break;
        case '"': {
            int escaped = 0;
            Py_ssize_t end = string_end(s, i, n, &escaped);
            if (end >= n) {
                return 0;
            }
            if (expect_name) {
                if (escaped || depth == 0) {
                    return 0;
                }
                int from = first[depth - 1];
                if (top - from >= LINEAR_PER_OBJECT || top == LINEAR_NAMES) {
                    return 2;
                }
                Py_ssize_t len = end - i;
                for (int k = from; k < top; k++) {
                    if (names[k].len == len && memcmp(names[k].name, s + i, (size_t)len) == 0) {
                        return 0;
                    }
                }
                names[top].name = s + i;
                names[top].len = len;
                top++;
                expect_name = 0;
            }
            i = end + 1;
            break;
        }
        default:
            break;
        }
    }
    return depth == 0;
}

/* scan_unique for objects with many members: every name, keyed by its object, in one hash table. */
static int
scan_unique_hashed(const unsigned char *s, Py_ssize_t n)
{
    Entry stack_entries[STACK_ENTRIES];
    uint64_t objects[MAX_DEPTH]; /* the object serial of each open container; 0 for arrays */
    memset(stack_entries, 0, sizeof(stack_entries));
    Table t = {stack_entries, STACK_ENTRIES - 1, 0, 0};
    int depth = 0, expect_name = 0, result = 1;
    uint64_t serial = 0;
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned char c = s[i++];
        switch (c) {
        case '{':
        case '[':
            if (depth == MAX_DEPTH) {
                result = 0;
                goto done;
            }
            objects[depth++] = c == '{' ? ++serial : 0;
            expect_name = c == '{';
            break;
        case '}':
        case ']':
            if (depth == 0 || (objects[depth - 1] != 0) != (c == '}')) {
                result = 0;
                goto done;
            }
            depth--;
            expect_name = 0;
            break;
        case ',':
            expect_name = depth > 0 && objects[depth - 1] != 0;
            break;
        case ':':
            expect_name = 0;
            break;
        case '"': {
            int escaped = 0;
            Py_ssize_t end = string_end(s, i, n, &escaped);
            if (end >= n) {
                result = 0;
                goto done;
            }
            if (expect_name) {
                if (escaped || depth == 0) {
                    result = 0;
                    goto done;
                }
                result = table_add(&t, s + i, end - i, objects[depth - 1]);
                if (result <= 0) {
                    goto done;
                }
                expect_name = 0;
            }
            i = end + 1;
            break;
        }
        default:
            break;
        }
    }
    if (depth != 0) {
        result = 0;
    }
done:
    if (t.heap) {
        PyMem_Free(t.entries);
    }
    return result;
}

/* 1: surely no object repeats a member; 0: maybe one does (or not sure); -1: error. */
static int
scan_unique(const unsigned char *s, Py_ssize_t n)
{
    int result = scan_unique_linear(s, n);
    return result == 2 ? scan_unique_hashed(s, n) : result;
}

static PyObject *
surely_unique(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "surely_unique(raw, value=None)");
        return NULL;
    }
    PyObject *raw = args[0];
    int result;
    if (PyBytes_CheckExact(raw)) {
        result = scan_unique((const unsigned char *)PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw));
    }
    else {
        Py_buffer view;
        if (PyObject_GetBuffer(raw, &view, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        result = scan_unique((const unsigned char *)view.buf, view.len);
        PyBuffer_Release(&view);
    }
    return result < 0 ? NULL : PyBool_FromLong(result);
}

/* ------------------------------------------------------------------------------------------ */
/* Headers                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/*
 * A dict view: PyObject_HEAD and the dict, the layout of CPython's _PyDictViewObject (public
 * up to 3.12, internal since 3.13). init_names() checks it on a real view before it is used.
 */
typedef struct {
    PyObject_HEAD
    PyDictObject *dv_dict;
} DictView;

static int
check_dict_view(void)
{
    PyObject *dict = PyDict_New();
    if (dict == NULL) {
        return -1;
    }
    PyObject *items = PyObject_CallMethod(dict, "items", NULL);
    int ok = items != NULL && PyDictItems_Check(items) && (PyObject *)((DictView *)items)->dv_dict == dict;
    Py_XDECREF(items);
    Py_DECREF(dict);
    if (items == NULL) {
        return -1;
    }
    return ok;
}

/* The (name, value) pairs of a dict's items view, or of a list or tuple of 2-tuples (as `for name, value in`). */
typedef struct {
    PyObject *dict;     /* iterate a dict with PyDict_Next */
    PyObject *seq;      /* or a list/tuple */
    Py_ssize_t pos;
} Pairs;

/* 1: ok; 0: not a shape we read (the caller answers "not sure"). */
static int
pairs_open(Pairs *p, PyObject *obj)
{
    p->dict = NULL;
    p->seq = NULL;
    p->pos = 0;
    if (PyDictItems_Check(obj)) {
        p->dict = g_dict_view_ok ? (PyObject *)((DictView *)obj)->dv_dict : NULL;
        return p->dict != NULL && PyDict_Check(p->dict);
    }
    if (PyList_CheckExact(obj) || PyTuple_CheckExact(obj)) {
        p->seq = obj;
        return 1;
    }
    return 0;
}

/* 1: a pair (borrowed); 0: the end; -1: a pair of another shape. */
static int
pairs_next(Pairs *p, PyObject **name, PyObject **value)
{
    if (p->dict != NULL) {
        return PyDict_Next(p->dict, &p->pos, name, value) ? 1 : 0;
    }
    Py_ssize_t size = PyList_CheckExact(p->seq) ? PyList_GET_SIZE(p->seq) : PyTuple_GET_SIZE(p->seq);
    if (p->pos >= size) {
        return 0;
    }
    PyObject *item = PyList_CheckExact(p->seq) ? PyList_GET_ITEM(p->seq, p->pos) : PyTuple_GET_ITEM(p->seq, p->pos);
    p->pos++;
    if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2) {
        return -1;
    }
    *name = PyTuple_GET_ITEM(item, 0);
    *value = PyTuple_GET_ITEM(item, 1);
    return 1;
}

static inline unsigned char
lower_ascii(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* A new reference to a str: the ASCII text p[0:n] in lower case (the interned name of a field when it is one). */
static PyObject *
lower_str(const unsigned char *p, Py_ssize_t n)
{
    for (int f = 0; f < N_FIELDS; f++) {
        if (PyUnicode_GET_LENGTH(g_field_str[f]) != n) {
            continue;
        }
        const unsigned char *name = (const unsigned char *)PyUnicode_DATA(g_field_str[f]);
        Py_ssize_t i = 0;
        while (i < n && lower_ascii(p[i]) == name[i]) {
            i++;
        }
        if (i == n) {
            return Py_NewRef(g_field_str[f]);
        }
    }
    PyObject *out = PyUnicode_New(n, 127);
    if (out == NULL) {
        return NULL;
    }
    unsigned char *q = (unsigned char *)PyUnicode_DATA(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        q[i] = lower_ascii(p[i]);
    }
    return out;
}

/* ASCII case-insensitive equality of a str with a lower-case ASCII str. */
static int
ascii_equal_lower(PyObject *name, PyObject *wanted)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(name);
    if (n != PyUnicode_GET_LENGTH(wanted)) {
        return 0;
    }
    const unsigned char *a = (const unsigned char *)PyUnicode_DATA(name);
    const unsigned char *b = (const unsigned char *)PyUnicode_DATA(wanted);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (lower_ascii(a[i]) != b[i]) {
            return 0;
        }
    }
    return 1;
}

/* Unpack one header pair as `for name, value in pairs` does; new references. */
static int
unpack_pair(PyObject *item, PyObject **name, PyObject **value)
{
    PyObject *pair = PyTuple_CheckExact(item) ? Py_NewRef(item) : PySequence_Tuple(item);
    if (pair == NULL) {
        return -1;
    }
    if (PyTuple_GET_SIZE(pair) != 2) {
        Py_DECREF(pair);
        PyErr_Format(PyExc_ValueError, "a header must be a (name, value) pair");
        return -1;
    }
    *name = Py_NewRef(PyTuple_GET_ITEM(pair, 0));
    *value = Py_NewRef(PyTuple_GET_ITEM(pair, 1));
    Py_DECREF(pair);
    return 0;
}

/* name == wanted or name.lower() == wanted; wanted is lower-case ASCII or anything else. */
static int
header_name_matches(PyObject *name, PyObject *wanted, int wanted_simple)
{
    if (wanted_simple && PyUnicode_CheckExact(name) && PyUnicode_IS_ASCII(name)) {
        return ascii_equal_lower(name, wanted);
    }
    int match = PyObject_RichCompareBool(name, wanted, Py_EQ);
    if (match == 0) {  /* anything unusual: exactly what the Python code does */
        PyObject *lowered = PyObject_CallMethod(name, "lower", NULL);
        match = lowered == NULL ? -1 : PyObject_RichCompareBool(lowered, wanted, Py_EQ);
        Py_XDECREF(lowered);
    }
    return match;
}

/* http.py _find: the value of the first header whose name == wanted or name.lower() == wanted. */
static PyObject *
find_header(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyUnicode_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "find_header(pairs, wanted: str)");
        return NULL;
    }
    PyObject *wanted = args[1];
    int wanted_simple = PyUnicode_IS_ASCII(wanted);
    const unsigned char *w = (const unsigned char *)PyUnicode_DATA(wanted);
    for (Py_ssize_t i = 0; wanted_simple && i < PyUnicode_GET_LENGTH(wanted); i++) {
        wanted_simple = !(w[i] >= 'A' && w[i] <= 'Z');
    }
    Pairs p;
    if (pairs_open(&p, args[0])) {
        PyObject *name, *value;
        int step;
        while ((step = pairs_next(&p, &name, &value)) > 0) {
            Py_INCREF(name);  /* .lower() of an odd name runs Python code */
            Py_INCREF(value);
            int match = header_name_matches(name, wanted, wanted_simple);
            Py_DECREF(name);
            if (match != 0) {
                if (match < 0) {
                    Py_DECREF(value);
                    return NULL;
                }
                return value;
            }
            Py_DECREF(value);
        }
        if (step == 0) {
            Py_RETURN_NONE;
        }
        /* a pair that is not a 2-tuple: start again the way Python unpacks */
    }
    PyObject *iter = PyObject_GetIter(args[0]);
    if (iter == NULL) {
        return NULL;
    }
    PyObject *item;
    while ((item = PyIter_Next(iter)) != NULL) {
        PyObject *name, *value;
        int unpacked = unpack_pair(item, &name, &value);
        Py_DECREF(item);
        if (unpacked < 0) {
            Py_DECREF(iter);
            return NULL;
        }
        int match = header_name_matches(name, wanted, wanted_simple);
        Py_DECREF(name);
        if (match != 0) {
            Py_DECREF(iter);
            if (match < 0) {
                Py_DECREF(value);
                return NULL;
            }
            return value;
        }
        Py_DECREF(value);
    }
    Py_DECREF(iter);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/*
 * The ce- header loop of http.py _decode_binary, for the plain case only: every ce- header
 * name is ASCII, no attribute repeats, every value is printable ASCII without "%" that does
 * not start with '"'; at least one attribute and no ce-datacontenttype. Then the attributes
 * dict the Python loop builds; otherwise None.
 */
static PyObject *
http_attributes(PyObject *module, PyObject *pairs)
{
    Pairs p;
    if (!pairs_open(&p, pairs)) {
        Py_RETURN_NONE;
    }
    PyObject *attributes = PyDict_New();
    if (attributes == NULL) {
        return NULL;
    }
    PyObject *name, *value;
    int step;
    while ((step = pairs_next(&p, &name, &value)) > 0) {
        if (!PyUnicode_CheckExact(name) || !PyUnicode_IS_ASCII(name)) {
            goto unsure;
        }
        Py_ssize_t n = PyUnicode_GET_LENGTH(name);
        const unsigned char *s = (const unsigned char *)PyUnicode_DATA(name);
        /* raw_name[:3] in {"ce-", "Ce-", "cE-", "CE-"} */
        if (n < 3 || lower_ascii(s[0]) != 'c' || lower_ascii(s[1]) != 'e' || s[2] != '-') {
            continue;
        }
        if (!PyUnicode_CheckExact(value) || !printable_ascii(value)) {
            goto unsure;
        }
        const unsigned char *v = (const unsigned char *)PyUnicode_DATA(value);
        Py_ssize_t vn = PyUnicode_GET_LENGTH(value);
        if ((vn > 0 && v[0] == '"') || memchr(v, '%', (size_t)vn) != NULL) {
            goto unsure;
        }
        PyObject *attribute = lower_str(s + 3, n - 3);
        if (attribute == NULL) {
            goto error;
        }
        Py_ssize_t size = PyDict_GET_SIZE(attributes);
        PyObject *stored = PyDict_SetDefault(attributes, attribute, value);
        Py_DECREF(attribute);
        if (stored == NULL) {
            goto error;
        }
        if (PyDict_GET_SIZE(attributes) == size) {
            goto unsure;  /* the attribute came before */
        }
    }
    if (step < 0 || PyDict_GET_SIZE(attributes) == 0) {
        goto unsure;
    }
    int has = PyDict_Contains(attributes, g_field_str[F_DATACONTENTTYPE]);
    if (has < 0) {
        goto error;
    }
    if (has) {
        goto unsure;
    }
    return attributes;
unsure:
    Py_DECREF(attributes);
    Py_RETURN_NONE;
error:
    Py_DECREF(attributes);
    return NULL;
}

/*
 * http.py text_headers: a list of (name, value) 2-tuples of bytes, as an HTTP server hands the
 * header fields over, to the same list of str pairs, each byte the code point of its number
 * (ISO-8859-1). None (not sure) for anything else: another iterable, another pair, bytearray.
 */
static PyObject *
latin1_pairs(PyObject *module, PyObject *raw)
{
    if (!PyList_CheckExact(raw)) {
        Py_RETURN_NONE;
    }
    Py_ssize_t n = PyList_GET_SIZE(raw);
    PyObject *out = PyList_New(n);  /* its items start NULL: a DECREF below frees what was set */
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        /* PyTuple_New below may collect garbage, and a finalizer may change raw: look again each time */
        if (i >= PyList_GET_SIZE(raw)) {
            goto unsure;
        }
        PyObject *pair = PyList_GET_ITEM(raw, i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2) {
            goto unsure;
        }
        PyObject *name = PyTuple_GET_ITEM(pair, 0);
        PyObject *value = PyTuple_GET_ITEM(pair, 1);
        if (!PyBytes_CheckExact(name) || !PyBytes_CheckExact(value)) {
            goto unsure;
        }
        /* str objects are not tracked by the collector: both are made before anything that may collect */
        PyObject *name_text = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name), NULL);
        if (name_text == NULL) {
            goto error;
        }
        PyObject *value_text = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), NULL);
        if (value_text == NULL) {
            Py_DECREF(name_text);
            goto error;
        }
        PyObject *text = PyTuple_New(2);
        if (text == NULL) {
            Py_DECREF(name_text);
            Py_DECREF(value_text);
            goto error;
        }
        PyTuple_SET_ITEM(text, 0, name_text);
        PyTuple_SET_ITEM(text, 1, value_text);
        PyList_SET_ITEM(out, i, text);
    }
    if (n != PyList_GET_SIZE(raw)) {
        goto unsure;  /* raw grew meanwhile */
    }
    return out;
unsure:
    Py_DECREF(out);
    Py_RETURN_NONE;
error:
    Py_DECREF(out);
    return NULL;
}

/*
 * kafka.py _read_headers, when it finds no failure: names are ASCII str or bytes, values
 * bytes (valid UTF-8), str or None. Then the attributes dict the Python loop builds
 * (content-type under "content-type", ce_x under "x"); otherwise None.
 */
static PyObject *
kafka_attributes(PyObject *module, PyObject *headers)
{
    Pairs p;
    if (!pairs_open(&p, headers)) {
        Py_RETURN_NONE;
    }
    PyObject *attributes = PyDict_New();
    if (attributes == NULL) {
        return NULL;
    }
    PyObject *name, *value;
    int step;
    while ((step = pairs_next(&p, &name, &value)) > 0) {
        const unsigned char *s;
        Py_ssize_t n;
        if (PyBytes_CheckExact(name)) {
            s = (const unsigned char *)PyBytes_AS_STRING(name);
            n = PyBytes_GET_SIZE(name);
            for (Py_ssize_t i = 0; i < n; i++) {
                if (s[i] >= 0x80) {
                    goto unsure;
                }
            }
        }
        else if (PyUnicode_CheckExact(name) && PyUnicode_IS_ASCII(name)) {
            s = (const unsigned char *)PyUnicode_DATA(name);
            n = PyUnicode_GET_LENGTH(name);
        }
        else {
            goto unsure;
        }
        PyObject *attribute;
        if (n == 12 && lower_ascii(s[0]) == 'c' && lower_ascii(s[1]) == 'o' && lower_ascii(s[2]) == 'n' &&
            lower_ascii(s[3]) == 't' && lower_ascii(s[4]) == 'e' && lower_ascii(s[5]) == 'n' &&
            lower_ascii(s[6]) == 't' && s[7] == '-' && lower_ascii(s[8]) == 't' &&
            lower_ascii(s[9]) == 'y' && lower_ascii(s[10]) == 'p' && lower_ascii(s[11]) == 'e') {
            attribute = Py_NewRef(g_str_content_type);
        }
        else if (n >= 3 && lower_ascii(s[0]) == 'c' && lower_ascii(s[1]) == 'e' && s[2] == '_') {
            attribute = lower_str(s + 3, n - 3);
        }
        else {
            continue;
        }
        if (attribute == NULL) {
            goto error;
        }
        PyObject *text;
        if (PyBytes_CheckExact(value)) {
            text = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), NULL);
            if (text == NULL) {
                Py_DECREF(attribute);
                if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                    PyErr_Clear();
                    goto unsure;
                }
                goto error;
            }
        }
        else if (PyUnicode_CheckExact(value)) {
            text = value;
            Py_INCREF(text);
        }
        else if (value == Py_None) {
            text = PyUnicode_New(0, 0);
        }
        else {
            Py_DECREF(attribute);
            goto unsure;
        }
        if (text == NULL) {
            Py_DECREF(attribute);
            goto error;
        }
        PyObject *before = PyDict_GetItemWithError(attributes, attribute);
        int differs = 0;
        if (before != NULL) {
            differs = PyObject_RichCompareBool(before, text, Py_NE);
        }
        else if (PyErr_Occurred()) {
            differs = -1;
        }
        if (differs != 0 || PyDict_SetItem(attributes, attribute, text) < 0) {
            Py_DECREF(attribute);
            Py_DECREF(text);
            if (differs > 0) {
                goto unsure;
            }
            goto error;
        }
        Py_DECREF(attribute);
        Py_DECREF(text);
    }
    if (step < 0) {
        goto unsure;
    }
    return attributes;
unsure:
    Py_DECREF(attributes);
    Py_RETURN_NONE;
error:
    Py_DECREF(attributes);
    return NULL;
}


/* ------------------------------------------------------------------------------------------ */
/* Building the event                                                                          */
/* ------------------------------------------------------------------------------------------ */

/* The field among fields[] that an exact ASCII str names, or -1. */
static inline int
match_field(PyObject *name, const int *fields, int nfields)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(name);
    const void *p = PyUnicode_DATA(name);
    for (int k = 0; k < nfields; k++) {
        PyObject *field = g_field_str[fields[k]];
        if (PyUnicode_GET_LENGTH(field) == n && memcmp(PyUnicode_DATA(field), p, (size_t)n) == 0) {
            return fields[k];
        }
    }
    return -1;
}

/* A new, empty Extensions to fill with PyDict_SetItem, or a dict for Extensions(dict). */
static PyObject *
new_extensions(void)
{
    return g_ext_plain_dict ? PyDict_Type.tp_new(g_ext_type, g_empty_tuple, NULL) : PyDict_New();
}

/* The filled result of new_extensions() as an Extensions (steals `rest`). */
static PyObject *
finish_extensions(PyObject *rest)
{
    if (g_ext_plain_dict) {
        return rest;
    }
    PyObject *ext = PyObject_CallOneArg((PyObject *)g_ext_type, rest);
    Py_DECREF(rest);
    return ext;
}

/*
 * Take the members fields[] name out of `source` (a dict) into values[] (borrowed; the
 * caller preset them to None) and put a new reference to the extensions (the other
 * members, in their order; EMPTY_EXTENSIONS when there are none) in values[F_EXTENSIONS].
 * With skip_none, a null extension is "not sure". Keys that are not exact str are "not
 * sure" too (Python's dict.pop would also find a str subclass equal to a field name).
 * 1: done; 0: not sure; -1: error.
 */
static int
take_members(PyObject *source, const int *fields, int nfields, int skip_none, PyObject **values)
{
    Py_ssize_t pos = 0, extensions = 0;
    PyObject *name, *value;
    while (PyDict_Next(source, &pos, &name, &value)) {
        if (!PyUnicode_CheckExact(name)) {
            return 0;
        }
        int f = PyUnicode_IS_ASCII(name) ? match_field(name, fields, nfields) : -1;
        if (f >= 0) {
            values[f] = value;
        }
        else if (skip_none && value == Py_None) {
            return 0;
        }
        else {
            extensions++;
        }
    }
    if (extensions == 0) {
        values[F_EXTENSIONS] = Py_NewRef(g_empty_ext);
        return 1;
    }
    PyObject *rest = new_extensions();
    if (rest == NULL) {
        return -1;
    }
    pos = 0;
    while (PyDict_Next(source, &pos, &name, &value)) {
        if (PyUnicode_IS_ASCII(name) && match_field(name, fields, nfields) >= 0) {
            continue;
        }
        if (PyDict_SetItem(rest, name, value) < 0) {
            Py_DECREF(rest);
            return -1;
        }
    }
    values[F_EXTENSIONS] = finish_extensions(rest);
    return values[F_EXTENSIONS] == NULL ? -1 : 1;
}

/* take_members for any keys: what `pop(name, None)` for each field, then the rest, gives. */
static int
take_members_generic(PyObject *source, PyObject *taken, const int *fields, int nfields, PyObject **values)
{
    Py_ssize_t found = 0;
    for (int k = 0; k < nfields; k++) {
        PyObject *v = PyDict_GetItemWithError(source, g_field_str[fields[k]]);
        if (v != NULL) {
            values[fields[k]] = v;
            found++;
        }
        else if (PyErr_Occurred()) {
            return -1;
        }
    }
    if (PyDict_GET_SIZE(source) == found) {
        values[F_EXTENSIONS] = Py_NewRef(g_empty_ext);
        return 1;
    }
    PyObject *rest = new_extensions();
    if (rest == NULL) {
        return -1;
    }
    Py_ssize_t pos = 0;
    PyObject *name, *value;
    while (PyDict_Next(source, &pos, &name, &value)) {
        int is_taken = PySet_Contains(taken, name);
        if (is_taken != 0 || PyErr_Occurred()) {
            if (is_taken < 0) {
                Py_DECREF(rest);
                return -1;
            }
            continue;
        }
        if (PyDict_SetItem(rest, name, value) < 0) {
            Py_DECREF(rest);
            return -1;
        }
    }
    values[F_EXTENSIONS] = finish_extensions(rest);
    return values[F_EXTENSIONS] == NULL ? -1 : 1;
}

static PyObject *
construct(PyObject **values)
{
    PyObject *event = PyObject_Vectorcall((PyObject *)g_event_type, values, 0, g_kwnames);
    Py_DECREF(values[F_EXTENSIONS]);
    return event;
}

/*
 * formats/json.py _from_own_dict for a dict without data_base64 and without null
 * extensions: CloudEvent(**members, extensions=Extensions(the rest) or EMPTY_EXTENSIONS).
 * Leaves obj as it was. None: not sure.
 */
static PyObject *
event_from_dict(PyObject *module, PyObject *obj)
{
    static const int fields[] = {F_SPECVERSION, F_ID, F_SOURCE, F_TYPE, F_DATACONTENTTYPE,
                                 F_DATASCHEMA, F_SUBJECT, F_TIME, F_DATA};
    if (g_empty_ext == NULL || !PyDict_CheckExact(obj)) {
        Py_RETURN_NONE;
    }
    int has_b64 = PyDict_Contains(obj, g_str_data_base64);
    if (has_b64 != 0) {
        return has_b64 < 0 ? NULL : Py_NewRef(Py_None);
    }
    PyObject *values[N_FIELDS];
    for (int i = 0; i < N_FIELDS; i++) {
        values[i] = Py_None;
    }
    int ok = take_members(obj, fields, (int)(sizeof(fields) / sizeof(fields[0])), 1, values);
    if (ok <= 0) {
        return ok < 0 ? NULL : Py_NewRef(Py_None);
    }
    return construct(values);
}

static PyObject *
configure_json(PyObject *module, PyObject *decode)
{
    if (!PyCallable_Check(decode)) {
        PyErr_SetString(PyExc_TypeError, "configure_json() takes the decoder's decode method");
        return NULL;
    }
    replace_ref(&g_json_decode, decode);
    Py_RETURN_NONE;
}

/*
 * formats/json.py decode (and kafka.py _decode_structured, which adds the record key as
 * `name`: `value` when the object has no such member) for the plain case: JSON that the
 * decoder reads without an error, no repeated member, one object, no data_base64 and no
 * null extension. None: not sure; the caller decodes the body again the full way.
 */
static PyObject *
json_event(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1 && nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "json_event(raw[, name, value])");
        return NULL;
    }
    PyObject *raw = args[0];
    if (g_json_decode == NULL || g_empty_ext == NULL || !PyBytes_CheckExact(raw) ||
        scan_unique((const unsigned char *)PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw)) != 1) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *obj = PyObject_CallOneArg(g_json_decode, raw);
    if (obj == NULL) {
        if (PyErr_ExceptionMatches(PyExc_Exception) && !PyErr_ExceptionMatches(PyExc_MemoryError)) {
            PyErr_Clear();  /* the full way reports it */
            Py_RETURN_NONE;
        }
        return NULL;
    }
    PyObject *event = Py_None;
    Py_INCREF(event);
    if (PyDict_CheckExact(obj)) {
        if (nargs == 3 && args[2] != Py_None) {
            PyObject *present = PyDict_GetItemWithError(obj, args[1]);
            if ((present == NULL && PyErr_Occurred()) ||
                ((present == NULL || present == Py_None) && PyDict_SetItem(obj, args[1], args[2]) < 0)) {
                Py_DECREF(obj);
                Py_DECREF(event);
                return NULL;
            }
        }
        Py_SETREF(event, event_from_dict(module, obj));
    }
    Py_DECREF(obj);
    return event;
}

/*
 * The end of the binary-mode decoders (http.py _event_from_strings, kafka.py _decode_binary):
 * CloudEvent from the attributes (a dict of str), the content type and the data, every
 * attribute that is not a core one an extension.
 */
static PyObject *
event_from_attributes(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    static const int fields[] = {F_SPECVERSION, F_ID, F_SOURCE, F_TYPE, F_DATASCHEMA, F_SUBJECT, F_TIME};
    if (nargs != 3 || !PyDict_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "event_from_attributes(attributes: dict, datacontenttype, data)");
        return NULL;
    }
    if (g_empty_ext == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_speedups.configure() was not called");
        return NULL;
    }
    PyObject *values[N_FIELDS];
    for (int i = 0; i < N_FIELDS; i++) {
        values[i] = Py_None;
    }
    values[F_DATACONTENTTYPE] = args[1];
    values[F_DATA] = args[2];
    int nfields = (int)(sizeof(fields) / sizeof(fields[0]));
    int ok = PyDict_CheckExact(args[0]) ? take_members(args[0], fields, nfields, 0, values) : 0;
    if (ok == 0) {
        for (int k = 0; k < nfields; k++) {
            values[fields[k]] = Py_None;
        }
        ok = take_members_generic(args[0], g_header_members, fields, nfields, values);
    }
    if (ok < 0) {
        return NULL;
    }
    return construct(values);
}

/* ------------------------------------------------------------------------------------------ */
/* sorted_json: formats/json.py encode_sorted                                                  */
/* ------------------------------------------------------------------------------------------ */

/* An output buffer: a stack area first, the heap once that is full. */
typedef struct {
    char *buf;
    Py_ssize_t len;
    Py_ssize_t cap;
    int heap;
} Out;

static int
out_reserve(Out *o, Py_ssize_t more)
{
    if (o->len + more <= o->cap) {
        return 0;
    }
    if (more > PY_SSIZE_T_MAX / 2 - o->len) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t cap = (o->len + more) * 2;
    char *grown = o->heap ? PyMem_Realloc(o->buf, (size_t)cap) : PyMem_Malloc((size_t)cap);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (!o->heap) {
        memcpy(grown, o->buf, (size_t)o->len);
    }
    o->buf = grown;
    o->cap = cap;
    o->heap = 1;
    return 0;
}

static inline int
out_put(Out *o, const char *s, Py_ssize_t n)
{
    if (out_reserve(o, n) < 0) {
        return -1;
    }
    memcpy(o->buf + o->len, s, (size_t)n);
    o->len += n;
    return 0;
}

/* A JSON string as msgspec writes it: ", \ and control characters escaped, the rest as UTF-8.
 * 1: written; 0: not sure (not an exact str, or not encodable: surrogates); -1: error. */
static int
out_string(Out *o, PyObject *value)
{
    static const char hex[] = "0123456789abcdef";
    if (!PyUnicode_CheckExact(value)) {
        return 0;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(value, &n);
    if (s == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            PyErr_Clear();
            return 0;
        }
        return -1;
    }
    if (out_reserve(o, n * 6 + 2) < 0) {  /* every byte escaped as \u00XX at worst */
        return -1;
    }
    char *w = o->buf + o->len;
    *w++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *w++ = (char)c;
            continue;
        }
        *w++ = '\\';
        switch (c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '\b': *w++ = 'b'; break;
        case '\t': *w++ = 't'; break;
        case '\n': *w++ = 'n'; break;
        case '\f': *w++ = 'f'; break;
        case '\r': *w++ = 'r'; break;
        default:
            *w++ = 'u';
            *w++ = '0';
            *w++ = '0';
            *w++ = hex[c >> 4];
            *w++ = hex[c & 15];
        }
    }
    *w++ = '"';
    o->len = w - o->buf;
    return 1;
}

/* bytes as a JSON string of standard Base64 with padding (binascii.b2a_base64, no newline). */
static int
out_base64(Out *o, PyObject *value)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(value);
    Py_ssize_t n = PyBytes_GET_SIZE(value);
    if (n > (PY_SSIZE_T_MAX - 8) / 4 * 3 || out_reserve(o, (n + 2) / 3 * 4 + 2) < 0) {
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        return -1;
    }
    char *w = o->buf + o->len;
    *w++ = '"';
    Py_ssize_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8) | s[i + 2];
        *w++ = alphabet[v >> 18];
        *w++ = alphabet[(v >> 12) & 63];
        *w++ = alphabet[(v >> 6) & 63];
        *w++ = alphabet[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)s[i + 1] << 8;
        }
        *w++ = alphabet[v >> 18];
        *w++ = alphabet[(v >> 12) & 63];
        *w++ = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
        *w++ = '=';
    }
    *w++ = '"';
    o->len = w - o->buf;
    return 0;
}

enum { M_STR, M_INT, M_TRUE, M_FALSE, M_BASE64, M_RAW };

typedef struct {
    const char *name;
    Py_ssize_t name_len;
    PyObject *name_owner; /* the str that holds name (owned), or NULL for a static name */
    int kind;
    PyObject *value;      /* owned: what the member writes (for M_RAW, the encoded bytes) */
} Member;

#define INLINE_MEMBERS 24

static int
member_before(const Member *a, const Member *b)
{
    Py_ssize_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    int c = memcmp(a->name, b->name, (size_t)n);
    return c != 0 ? c < 0 : a->name_len < b->name_len;
}

/* 1: members[*count] filled from a context attribute; 0: not sure; an attribute that is None is left out. */
static int
add_attribute(Member *members, Py_ssize_t *count, PyObject *ev, int field, int optional)
{
    PyObject *v = FIELD(ev, field);
    if (v == NULL) {
        return 0;
    }
    if (v == Py_None) {
        return optional;
    }
    if (!PyUnicode_CheckExact(v)) {
        return 0;
    }
    Member *m = &members[(*count)++];
    m->name = field_names[field];
    m->name_len = (Py_ssize_t)strlen(field_names[field]);
    m->name_owner = NULL;
    m->kind = M_STR;
    m->value = Py_NewRef(v);
    return 1;
}

/* The members of ev's JSON object (json.py to_dict), at most `room` of them; 1: done; 0: not sure; -1: error.
 *
 * As to_dict, the attributes and extensions first, then the data: encoding a JSON value may run Python
 * code (a value's own hooks), so every member holds its own references, whatever that code changes. */
static int
collect_members(PyObject *ev, Member *members, Py_ssize_t *count, Py_ssize_t room)
{
    static const int required[] = {F_SPECVERSION, F_ID, F_SOURCE, F_TYPE};
    static const int optional[] = {F_DATACONTENTTYPE, F_DATASCHEMA, F_SUBJECT, F_TIME};
    for (int i = 0; i < 4; i++) {
        if (!add_attribute(members, count, ev, required[i], 0) ||
            !add_attribute(members, count, ev, optional[i], 1)) {
            return 0;
        }
    }
    PyObject *extensions = FIELD(ev, F_EXTENSIONS);
    if (extensions == NULL || !PyDict_Check(extensions) || *count + PyDict_GET_SIZE(extensions) + 1 > room) {
        return 0;
    }
    Py_ssize_t pos = 0;
    PyObject *name, *value;
    while (PyDict_Next(extensions, &pos, &name, &value)) {
        if (!PyUnicode_CheckExact(name) || !PyUnicode_IS_ASCII(name)) {
            return 0;
        }
        const char *text = (const char *)PyUnicode_DATA(name);
        Py_ssize_t length = PyUnicode_GET_LENGTH(name);
        for (Py_ssize_t i = 0; i < length; i++) {  /* names to write as they are: nothing to escape */
            char c = text[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) {
                return 0;
            }
        }
        int kind;
        if (PyUnicode_CheckExact(value)) {
            kind = M_STR;
        } else if (value == Py_True || value == Py_False) {
            kind = value == Py_True ? M_TRUE : M_FALSE;
        } else if (PyLong_CheckExact(value)) {
            kind = M_INT;
        } else if (PyBytes_CheckExact(value)) {
            kind = M_BASE64;
        } else {
            return 0;
        }
        Member *m = &members[(*count)++];
        m->name = text;
        m->name_len = length;
        m->name_owner = Py_NewRef(name);
        m->kind = kind;
        m->value = Py_NewRef(value);
    }
    PyObject *data = FIELD(ev, F_DATA);
    if (data == NULL) {
        return 0;
    }
    if (data == Py_None) {
        return 1;
    }
    int kind = M_RAW;
    PyObject *held;
    if (PyBytes_CheckExact(data)) {
        kind = M_BASE64;
        held = Py_NewRef(data);
    } else if (PyUnicode_CheckExact(data)) {
        kind = M_STR;
        held = Py_NewRef(data);
    } else {
        PyObject *encode = Py_NewRef(g_sorted_encode);
        Py_INCREF(data);
        held = PyObject_CallOneArg(encode, data);
        Py_DECREF(data);
        Py_DECREF(encode);
        if (held == NULL) {
            if (PyErr_ExceptionMatches(PyExc_Exception) && !PyErr_ExceptionMatches(PyExc_MemoryError)) {
                PyErr_Clear();  /* the Python path raises it, the same way */
                return 0;
            }
            return -1;
        }
        if (!PyBytes_CheckExact(held)) {
            Py_DECREF(held);
            return 0;
        }
    }
    Member *m = &members[(*count)++];
    m->name = kind == M_BASE64 ? "data_base64" : "data";
    m->name_len = (Py_ssize_t)strlen(m->name);
    m->name_owner = NULL;
    m->kind = kind;
    m->value = held;
    return 1;
}

static int
write_member(Out *o, const Member *m)
{
    char number[32];
    if (out_reserve(o, m->name_len + 4) < 0) {
        return -1;
    }
    o->buf[o->len++] = '"';
    memcpy(o->buf + o->len, m->name, (size_t)m->name_len);  /* [A-Za-z0-9_]: nothing to escape */
    o->len += m->name_len;
    o->buf[o->len++] = '"';
    o->buf[o->len++] = ':';
    switch (m->kind) {
    case M_STR:
        return out_string(o, m->value);
    case M_TRUE:
        return out_put(o, "true", 4) < 0 ? -1 : 1;
    case M_FALSE:
        return out_put(o, "false", 5) < 0 ? -1 : 1;
    case M_BASE64:
        return out_base64(o, m->value) < 0 ? -1 : 1;
    case M_RAW:
        return out_put(o, PyBytes_AS_STRING(m->value), PyBytes_GET_SIZE(m->value)) < 0 ? -1 : 1;
    default: {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(m->value, &overflow);
        if (overflow || (v == -1 && PyErr_Occurred())) {
            return PyErr_Occurred() ? -1 : 0;
        }
        int n = snprintf(number, sizeof(number), "%lld", v);
        return out_put(o, number, n) < 0 ? -1 : 1;
    }
    }
}

/* formats/json.py encode_sorted for the plain case; None: not sure. */
static PyObject *
sorted_json(PyObject *module, PyObject *ev)
{
    if (g_sorted_encode == NULL || g_event_type == NULL || !Py_IS_TYPE(ev, g_event_type)) {
        Py_RETURN_NONE;
    }
    PyObject *extensions = FIELD(ev, F_EXTENSIONS);
    if (extensions == NULL || !PyDict_Check(extensions)) {
        Py_RETURN_NONE;
    }
    Py_ssize_t room = 9 + PyDict_GET_SIZE(extensions);
    Member inline_members[INLINE_MEMBERS];
    Member *members = room <= INLINE_MEMBERS ? inline_members : PyMem_New(Member, (size_t)room);
    if (members == NULL) {
        return PyErr_NoMemory();
    }
    char stack[1024];
    Out o = {stack, 0, (Py_ssize_t)sizeof(stack), 0};
    Py_ssize_t count = 0;
    PyObject *result = NULL;
    int ok = collect_members(ev, members, &count, room);
    if (ok > 0) {
        for (Py_ssize_t i = 1; i < count; i++) {  /* insertion sort: a handful of members */
            Member m = members[i];
            Py_ssize_t j = i;
            for (; j > 0 && member_before(&m, &members[j - 1]); j--) {
                members[j] = members[j - 1];
            }
            members[j] = m;
        }
        for (Py_ssize_t i = 1; i < count && ok > 0; i++) {
            /* A name twice (an extension named like an attribute): to_dict keeps one; Python decides. */
            if (members[i].name_len == members[i - 1].name_len &&
                memcmp(members[i].name, members[i - 1].name, (size_t)members[i].name_len) == 0) {
                ok = 0;
            }
        }
    }
    if (ok > 0) {
        ok = out_put(&o, "{", 1) < 0 ? -1 : 1;
        for (Py_ssize_t i = 0; i < count && ok > 0; i++) {
            if (i > 0 && out_put(&o, ",", 1) < 0) {
                ok = -1;
                break;
            }
            ok = write_member(&o, &members[i]);
        }
        if (ok > 0) {
            ok = out_put(&o, "}", 1) < 0 ? -1 : 1;
        }
    }
    if (ok > 0) {
        result = PyBytes_FromStringAndSize(o.buf, o.len);
    } else if (ok == 0) {
        result = Py_NewRef(Py_None);
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_DECREF(members[i].value);
        Py_XDECREF(members[i].name_owner);
    }
    if (o.heap) {
        PyMem_Free(o.buf);
    }
    if (members != inline_members) {
        PyMem_Free(members);
    }
    return result;
}

static PyObject *
configure_sorted_json(PyObject *module, PyObject *encode)
{
    if (!PyCallable_Check(encode)) {
        PyErr_SetString(PyExc_TypeError, "configure_sorted_json() takes the sorted encoder's encode method");
        return NULL;
    }
    replace_ref(&g_sorted_encode, encode);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------ */

static PyMethodDef methods[] = {
    {"configure", (PyCFunction)(void (*)(void))configure, METH_VARARGS | METH_KEYWORDS,
     "configure(event_type, fallback, *, specversion, sources, media, uris, reserved, data_types, "
     "extensions_type, long_name, empty_extensions): the rules and types the other functions use."},
    {"looks_valid", looks_valid, METH_O,
     "looks_valid(ev) -> bool: True when ev is surely valid; otherwise the fallback decides."},
    {"sure_valid", sure_valid, METH_O, "sure_valid(ev) -> bool: the C verdict alone; False means not sure."},
    {"timestamp_micros", timestamp_micros, METH_O,
     "timestamp_micros(s) -> int | None: microseconds since the epoch of a valid Timestamp; None means not sure."},
    {"is_timestamp", is_timestamp, METH_O,
     "is_timestamp(s) -> bool | None: RFC 3339 date-time; None for a leap second."},
    {"surely_unique", (PyCFunction)(void (*)(void))surely_unique, METH_FASTCALL,
     "surely_unique(raw, value=None) -> bool: True when no JSON object in raw repeats a member name."},
    {"find_header", (PyCFunction)(void (*)(void))find_header, METH_FASTCALL,
     "find_header(pairs, wanted) -> value | None: the first header named wanted (any case)."},
    {"http_attributes", http_attributes, METH_O,
     "http_attributes(pairs) -> dict | None: the plain ce- headers; None means not sure."},
    {"latin1_pairs", latin1_pairs, METH_O,
     "latin1_pairs(raw) -> list | None: bytes header pairs as str pairs (latin-1); None means not sure."},
    {"kafka_attributes", kafka_attributes, METH_O,
     "kafka_attributes(headers) -> dict | None: content-type and ce_ headers; None means not sure."},
    {"post_init", post_init, METH_O, "post_init(ev): CloudEvent.__post_init__, the common case in C."},
    {"post_init_for", post_init_for, METH_O,
     "post_init_for(fn) -> post_init: a decorator; fn is the Python __post_init__ for the rest."},
    {"post_init_shortcut", post_init_shortcut, METH_O,
     "post_init_shortcut(enabled) -> bool: whether post_init may skip the Python __post_init__ (for tests)."},
    {"configure_json", configure_json, METH_O, "configure_json(decode): the JSON decoder json_event() uses."},
    {"json_event", (PyCFunction)(void (*)(void))json_event, METH_FASTCALL,
     "json_event(raw[, name, value]) -> CloudEvent | None: one event in the JSON format; None means not sure."},
    {"event_from_dict", event_from_dict, METH_O,
     "event_from_dict(obj) -> CloudEvent | None: the JSON format's members to an event; None means not sure."},
    {"event_from_attributes", (PyCFunction)(void (*)(void))event_from_attributes, METH_FASTCALL,
     "event_from_attributes(attributes, datacontenttype, data) -> CloudEvent: a binary-mode event."},
    {"configure_sorted_json", configure_sorted_json, METH_O,
     "configure_sorted_json(encode): the sorted encoder sorted_json() uses for data values."},
    {"sorted_json", sorted_json, METH_O,
     "sorted_json(ev) -> bytes | None: ev in the JSON format, compact, members sorted; None means not sure."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "eventaudit.events._speedups",
    "Optional C fast paths for the CloudEvents codec; the pure-Python code is the reference.",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (g_kwnames == NULL && init_names() < 0) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
