/* nsml.report()'s common case in C: the inner loop's one call, at a fraction of Python's cost.
 *
 * Python's own report() (nsml/client/metrics.py) stays the one definition of what report()
 * does; this is only its fast path, taken when every argument is a keyword whose value is
 * exactly an int, a float or None, none of them `summary`, `scope` or `walltime`, and the
 * journal is open (on the platform). Everything else is handed, arguments untouched, to the
 * Python function. The fast path costs what Python cannot avoid less: the call arrives as
 * vectorcall (values in an array, names in the call site's constant tuple), so no keyword
 * dict is built; the record queued is one tuple
 *
 *     (names, value_0, ..., value_n-1, walltime)
 *
 * whose `names` is that same constant tuple, so the journal's encoder can tell consecutive
 * reports of the same keys by identity and write them as one batch line (journal.py). Values
 * of exactly these types are immutable, so encoding them later gives the same bytes as now.
 *
 * The GIL is held throughout, so records from threads never interleave inside one; the deque
 * append is the same atomic operation the Python path uses.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <time.h>

static PyObject *slow_report;   /* the Python report(): the whole behaviour */
static PyObject *journal;       /* the open Journal; NULL until report() found one */
static PyObject *pending;       /* its deque of records */
static Py_ssize_t backlog = 0;  /* encode_backlog() once more records than this wait */
static PyObject *str_append, *str_encode_backlog;

/* The keywords the Python function must see: summary, scope and walltime (overwritten). */
static int
reserved(PyObject *name)
{
    Py_ssize_t size = PyUnicode_GET_LENGTH(name);
    if (size != 5 && size != 7 && size != 8)
        return 0;
    return PyUnicode_CompareWithASCIIString(name, "scope") == 0
        || PyUnicode_CompareWithASCIIString(name, "summary") == 0
        || PyUnicode_CompareWithASCIIString(name, "walltime") == 0;
}

/* time.time(), computed as CPython computes it, so both paths give the same walltimes. */
static PyObject *
now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    long long ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    double seconds = (ns % 1000000000LL == 0) ? (double)(ns / 1000000000LL) : (double)ns / 1e9;
    return PyFloat_FromDouble(seconds);
}

static PyObject *
report(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t count;
    if (journal == NULL || PyVectorcall_NARGS(nargsf) != 0 || kwnames == NULL)
        goto general;
    count = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *value = args[i];
        if (!(PyFloat_CheckExact(value) || PyLong_CheckExact(value) || value == Py_None))
            goto general;
        if (reserved(PyTuple_GET_ITEM(kwnames, i)))
            goto general;
    }
    PyObject *record = PyTuple_New(count + 2);
    if (record == NULL)
        return NULL;
    PyObject *walltime = now();
    if (walltime == NULL) {
        Py_DECREF(record);
        return NULL;
    }
    Py_INCREF(kwnames);
    PyTuple_SET_ITEM(record, 0, kwnames);
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(record, i + 1, args[i]);
    }
    PyTuple_SET_ITEM(record, count + 1, walltime);
    /* Its items are numbers, None and a tuple of str: it can be part of no cycle, so the cyclic
     * collector need not walk it (CPython would untrack it at its first collection anyway). */
    PyObject_GC_UnTrack(record);
    /* journal.append, looked up each time: the journal rebinds it (its flusher starts on the
     * first append, and again in a forked child). */
    PyObject *done = PyObject_CallMethodOneArg(journal, str_append, record);
    Py_DECREF(record);
    if (done == NULL)
        return NULL;
    Py_DECREF(done);
    Py_ssize_t waiting = PyObject_Length(pending);
    if (waiting < 0)
        return NULL;
    if (waiting > backlog) {
        done = PyObject_CallMethodNoArgs(journal, str_encode_backlog);
        if (done == NULL)
            return NULL;
        Py_DECREF(done);
    }
    Py_RETURN_NONE;
general:
    if (slow_report == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "nsml._fastreport: configure() was not called");
        return NULL;
    }
    return PyObject_Vectorcall(slow_report, args, nargsf, kwnames);
}

static PyObject *
configure(PyObject *self, PyObject *args)
{
    PyObject *slow, *open_journal, *queue;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "OOOn:configure", &slow, &open_journal, &queue, &limit))
        return NULL;
    if (!PyCallable_Check(slow)) {
        PyErr_SetString(PyExc_TypeError, "configure: the general report() must be callable");
        return NULL;
    }
    Py_INCREF(slow);
    Py_XSETREF(slow_report, slow);
    if (open_journal == Py_None) {
        Py_CLEAR(journal);
        Py_CLEAR(pending);
    } else {
        Py_INCREF(open_journal);
        Py_INCREF(queue);
        Py_XSETREF(journal, open_journal);
        Py_XSETREF(pending, queue);
    }
    backlog = limit;
    Py_RETURN_NONE;
}

/* report() as a function object of its own, documented with the Python function's docstring
 * (help(nsml.report) reads the same either way); the definition must outlive it, so it is
 * static, and the docstring's bytes are kept alive with the module. */
static PyMethodDef report_def = {"report", (PyCFunction)(void (*)(void))report,
                                 METH_FASTCALL | METH_KEYWORDS, NULL};
static PyObject *report_doc;

static PyObject *
make_report(PyObject *self, PyObject *doc)
{
    if (report_def.ml_doc == NULL) {
        if (!PyUnicode_Check(doc)) {
            PyErr_SetString(PyExc_TypeError, "make_report: the docstring must be a str");
            return NULL;
        }
        report_doc = PyUnicode_AsUTF8String(doc);
        if (report_doc == NULL)
            return NULL;
        report_def.ml_doc = PyBytes_AS_STRING(report_doc);
    }
    return PyCFunction_NewEx(&report_def, NULL, NULL);
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(general, journal, pending, backlog): the Python report() for everything but the "
     "fast path, and the journal (None: off, every call goes to `general`)."},
    {"make_report", make_report, METH_O, "make_report(doc): the fast report() function."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastreport",
                                    "nsml.report()'s fast path (see _fastreport.c).", -1, methods};

PyMODINIT_FUNC
PyInit__fastreport(void)
{
    str_append = PyUnicode_InternFromString("append");
    str_encode_backlog = PyUnicode_InternFromString("encode_backlog");
    if (str_append == NULL || str_encode_backlog == NULL)
        return NULL;
    return PyModule_Create(&module);
}
