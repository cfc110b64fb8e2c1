// costmodel._nodes: the compiled reader behind costmodel.ir.node_columns.
//
// Reading a handful of facts from every node of a batch of CostGraphs is most of what a batch
// estimate costs when it is done in Python (a list comprehension per fact, about 3 us a node).  This
// reader does the same walk in one pass per graph with the CPython API and writes the facts into
// flat buffers that numpy wraps without copying.  It computes exactly what the Python reader in
// costmodel/ir/_columns.py computes; the tests hold the two equal.  Whenever a node holds something
// the fast path does not expect (a shape dimension that is not a machine integer, a product that
// overflows 64 bits, a dtype it has no width for), read_nodes returns None and the caller uses the
// Python reader, so nothing unusual is guessed at here.
#include <nanobind/nanobind.h>

#include <Python.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace nb = nanobind;

namespace {

constexpr int READER_VERSION = 3;

struct Names {
    PyObject *nodes, *edges, *is_view, *kind, *flops, *bytes_read, *bytes_written, *out_shapes, *out_dtypes,
        *attrs, *scope, *kernel, *stride, *groups, *inplace, *param_inputs;
};
Names N;

void intern_names() {
    N.nodes = PyUnicode_InternFromString("nodes");
    N.edges = PyUnicode_InternFromString("edges");
    N.is_view = PyUnicode_InternFromString("is_view");
    N.kind = PyUnicode_InternFromString("kind");
    N.flops = PyUnicode_InternFromString("flops");
    N.bytes_read = PyUnicode_InternFromString("bytes_read");
    N.bytes_written = PyUnicode_InternFromString("bytes_written");
    N.out_shapes = PyUnicode_InternFromString("out_shapes");
    N.out_dtypes = PyUnicode_InternFromString("out_dtypes");
    N.attrs = PyUnicode_InternFromString("attrs");
    N.scope = PyUnicode_InternFromString("scope");
    N.kernel = PyUnicode_InternFromString("kernel");
    N.stride = PyUnicode_InternFromString("stride");
    N.groups = PyUnicode_InternFromString("groups");
    N.inplace = PyUnicode_InternFromString("inplace");
    N.param_inputs = PyUnicode_InternFromString("param_inputs");
}

// An owned reference that is released when it goes out of scope.
struct Ref {
    PyObject *p = nullptr;
    Ref() = default;
    explicit Ref(PyObject *o) : p(o) {}
    Ref(const Ref &) = delete;
    Ref &operator=(const Ref &) = delete;
    Ref(Ref &&o) noexcept : p(o.p) { o.p = nullptr; }
    ~Ref() { Py_XDECREF(p); }
    PyObject *release() {
        PyObject *o = p;
        p = nullptr;
        return o;
    }
};

// Thrown when the fast path meets something it does not handle; the caller falls back to Python.
struct Unsupported {};
// Thrown when Python raised (the error indicator is set).
struct PyError {};

PyObject *get(PyObject *o, PyObject *name) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (!v) throw PyError{};
    return v;
}

double as_double(PyObject *v) {
    double d = PyFloat_AsDouble(v);
    if (d == -1.0 && PyErr_Occurred()) throw PyError{};
    return d;
}

// A dimension or other small integer; anything that is not a Python int (or an int that does not fit
// in 64 bits) is left to the Python reader.
int64_t as_int(PyObject *v) {
    if (!PyLong_Check(v)) throw Unsupported{};
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow) throw Unsupported{};
    if (x == -1 && PyErr_Occurred()) throw PyError{};
    return x;
}

int64_t mul(int64_t a, int64_t b) {
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r)) throw Unsupported{};
    return r;
}

// The elements of a list or tuple (borrowed), without a copy.
struct Seq {
    PyObject **items = nullptr;
    Py_ssize_t size = 0;
    explicit Seq(PyObject *o) {
        if (PyTuple_Check(o)) {
            items = &PyTuple_GET_ITEM(o, 0);
            size = PyTuple_GET_SIZE(o);
        } else if (PyList_Check(o)) {
            items = reinterpret_cast<PyListObject *>(o)->ob_item;  // NULL for an empty list
            size = PyList_GET_SIZE(o);
        } else {
            throw Unsupported{};
        }
    }
};

// A writable buffer of n elements of T, handed to Python as a bytearray.
template <class T>
struct Column {
    Ref buf;
    T *data = nullptr;
    explicit Column(Py_ssize_t n) : buf(PyByteArray_FromStringAndSize(nullptr, n * (Py_ssize_t)sizeof(T))) {
        if (!buf.p) throw PyError{};
        data = reinterpret_cast<T *>(PyByteArray_AS_STRING(buf.p));
    }
};

int truthy(PyObject *v) {
    int t = PyObject_IsTrue(v);
    if (t < 0) throw PyError{};
    return t;
}

struct Reader {
    PyObject *kind_id;      // dict: kind name -> int
    PyObject *dtype_bytes;  // dict: dtype name -> bytes per element
    bool params;            // count each node's parameter operands (training steps need them)
    Py_ssize_t n, n_edges;
    Column<uint8_t> view, inplace, shaped;
    Column<int64_t> kind, channels, groups, param_count, edges, offsets, edge_offsets;
    Column<double> flops, nbytes, numel, out_bytes, karea, stride;
    Ref nodes, dtype0, attrs, scopes;

    Reader(PyObject *kid, PyObject *db, bool params_, Py_ssize_t n_, Py_ssize_t e_, Py_ssize_t g_)
        : kind_id(kid), dtype_bytes(db), params(params_), n(n_), n_edges(e_), view(n_), inplace(n_), shaped(n_), kind(n_),
          channels(n_), groups(n_), param_count(params_ ? n_ : 0), edges(2 * e_), offsets(g_ + 1), edge_offsets(g_ + 1), flops(n_), nbytes(n_),
          numel(n_), out_bytes(n_), karea(n_), stride(n_), nodes(PyList_New(n_)), dtype0(PyList_New(n_)),
          attrs(PyList_New(n_)), scopes(PyList_New(g_)) {
        if (!nodes.p || !dtype0.p || !attrs.p || !scopes.p) throw PyError{};
    }

    // Bytes per element of a dtype name, or 0 when the table has none.
    int64_t width(PyObject *dt) {
        PyObject *b = PyDict_GetItemWithError(dtype_bytes, dt);
        if (!b) {
            if (PyErr_Occurred()) throw PyError{};
            return 0;
        }
        return as_int(b);
    }

    void node(PyObject *nd, Py_ssize_t i, PyObject *scope_set) {
        Py_INCREF(nd);
        PyList_SET_ITEM(nodes.p, i, nd);

        Ref v(get(nd, N.is_view));
        view.data[i] = (uint8_t)truthy(v.p);

        Ref k(get(nd, N.kind));
        PyObject *kid = PyDict_GetItemWithError(kind_id, k.p);
        if (!kid && PyErr_Occurred()) throw PyError{};
        kind.data[i] = kid ? as_int(kid) : -1;  // an unknown kind: the caller names it

        Ref f(get(nd, N.flops));
        flops.data[i] = as_double(f.p);
        Ref br(get(nd, N.bytes_read)), bw(get(nd, N.bytes_written));
        if (PyFloat_CheckExact(br.p) && PyFloat_CheckExact(bw.p)) {
            nbytes.data[i] = PyFloat_AS_DOUBLE(br.p) + PyFloat_AS_DOUBLE(bw.p);
        } else {  // the sum as Python forms it (exact for integers), then as a double
            Ref s(PyNumber_Add(br.p, bw.p));
            if (!s.p) throw PyError{};
            nbytes.data[i] = as_double(s.p);
        }

        // outputs: the first one's element count, rank and channels; the bytes of all of them
        Ref shapes_o(get(nd, N.out_shapes)), dts_o(get(nd, N.out_dtypes));
        Seq shapes(shapes_o.p), dts(dts_o.p);
        PyObject *d0 = dts.size ? dts.items[0] : Py_None;
        Py_INCREF(d0);
        PyList_SET_ITEM(dtype0.p, i, d0);
        double count = 0.0;
        int64_t ch = 0, first_len = -1;
        int64_t total = 0;  // bytes of all outputs, as Node.out_bytes counts them
        for (Py_ssize_t s = 0; s < shapes.size; ++s) {
            Seq dims(shapes.items[s]);
            int64_t p = 1;
            for (Py_ssize_t d = 0; d < dims.size; ++d) p = mul(p, as_int(dims.items[d]));
            if (s == 0) {
                first_len = dims.size;
                count = dims.size ? (double)p : 0.0;  // a scalar counts 0 here, one element in the bytes
                ch = dims.size > 1 ? as_int(dims.items[1]) : 0;
            }
            if (s < dts.size) {
                int64_t w = width(dts.items[s]);
                if (w <= 0) throw Unsupported{};  // Node.out_bytes resolves unknown dtypes itself
                total += mul(p, w);
            }
        }
        numel.data[i] = count;
        shaped.data[i] = first_len > 0;
        channels.data[i] = ch;
        out_bytes.data[i] = (double)total;

        // attributes
        Ref a(get(nd, N.attrs));
        if (!PyDict_Check(a.p)) throw Unsupported{};
        double ka = 1.0, st = 1.0;
        int64_t gr = 1;
        uint8_t ip = 0;
        if (PyDict_GET_SIZE(a.p)) {
            PyObject *kv = PyDict_GetItemWithError(a.p, N.kernel);
            if (!kv && PyErr_Occurred()) throw PyError{};
            if (kv && truthy(kv)) {
                Seq ks(kv);
                int64_t p = 1;
                for (Py_ssize_t d = ks.size > 2 ? ks.size - 2 : 0; d < ks.size; ++d) p = mul(p, as_int(ks.items[d]));
                ka = (double)p;
            }
            PyObject *sv = PyDict_GetItemWithError(a.p, N.stride);
            if (!sv && PyErr_Occurred()) throw PyError{};
            if (sv && truthy(sv)) {
                Seq ss(sv);
                int64_t m = as_int(ss.items[0]);
                for (Py_ssize_t d = 1; d < ss.size; ++d) {
                    int64_t x = as_int(ss.items[d]);
                    if (x > m) m = x;
                }
                st = (double)m;
            }
            PyObject *gv = PyDict_GetItemWithError(a.p, N.groups);
            if (!gv && PyErr_Occurred()) throw PyError{};
            if (gv) {
                if (!truthy(gv)) gr = 1;
                else gr = as_int(gv);
            }
            PyObject *iv = PyDict_GetItemWithError(a.p, N.inplace);
            if (!iv && PyErr_Occurred()) throw PyError{};
            ip = iv ? (uint8_t)truthy(iv) : 0;
        }
        karea.data[i] = ka;
        stride.data[i] = st;
        groups.data[i] = gr;
        inplace.data[i] = ip;
        PyList_SET_ITEM(attrs.p, i, a.release());

        if (params) {
            Ref pi(get(nd, N.param_inputs));
            Seq pis(pi.p);
            int64_t np_ = 0;
            for (Py_ssize_t k = 0; k < pis.size; ++k) np_ += truthy(pis.items[k]);
            param_count.data[i] = np_;
        }

        Ref sc(get(nd, N.scope));
        if (PySet_Add(scope_set, sc.p) < 0) throw PyError{};
    }

    void graph(PyObject *g, Py_ssize_t gi, Py_ssize_t &at, Py_ssize_t &e_at) {
        Ref nl(get(g, N.nodes)), el(get(g, N.edges));
        Seq ns(nl.p), es(el.p);
        Ref set(PySet_New(nullptr));
        if (!set.p) throw PyError{};
        for (Py_ssize_t j = 0; j < ns.size; ++j) node(ns.items[j], at + j, set.p);
        for (Py_ssize_t j = 0; j < es.size; ++j) {
            Seq e(es.items[j]);
            if (e.size != 2) throw Unsupported{};
            edges.data[2 * (e_at + j)] = as_int(e.items[0]);
            edges.data[2 * (e_at + j) + 1] = as_int(e.items[1]);
        }
        at += ns.size;
        e_at += es.size;
        offsets.data[gi + 1] = at;
        edge_offsets.data[gi + 1] = e_at;
        PyList_SET_ITEM(scopes.p, gi, set.release());
    }
};

// Counts of nodes and edges, so that every buffer is allocated once.
void count(PyObject *graphs, Py_ssize_t &n, Py_ssize_t &e) {
    Seq gs(graphs);
    n = e = 0;
    for (Py_ssize_t g = 0; g < gs.size; ++g) {
        Ref nl(get(gs.items[g], N.nodes)), el(get(gs.items[g], N.edges));
        Py_ssize_t a = PyObject_Length(nl.p), b = PyObject_Length(el.p);
        if (a < 0 || b < 0) throw PyError{};
        n += a;
        e += b;
    }
}

nb::object read_nodes(nb::handle graphs, nb::handle kind_id, nb::handle dtype_bytes, bool params) {
    if (!PyDict_Check(kind_id.ptr()) || !PyDict_Check(dtype_bytes.ptr()))
        throw nb::type_error("read_nodes(graphs, kind_id, dtype_bytes): the last two must be dicts");
    try {
        PyObject *gl = graphs.ptr();
        Py_ssize_t n, e;
        count(gl, n, e);
        Seq gs(gl);
        Reader r(kind_id.ptr(), dtype_bytes.ptr(), params, n, e, gs.size);
        r.offsets.data[0] = 0;
        r.edge_offsets.data[0] = 0;
        Py_ssize_t at = 0, e_at = 0;
        for (Py_ssize_t g = 0; g < gs.size; ++g) r.graph(gs.items[g], g, at, e_at);
        if (at != n || e_at != e) return nb::none();  // a graph changed while it was read
        PyObject *out = PyTuple_Pack(
            20, r.offsets.buf.p, r.nodes.p, r.view.buf.p, r.kind.buf.p, r.flops.buf.p, r.nbytes.buf.p,
            r.numel.buf.p, r.shaped.buf.p, r.channels.buf.p, r.out_bytes.buf.p, r.dtype0.p, r.attrs.p,
            r.karea.buf.p, r.stride.buf.p, r.groups.buf.p, r.inplace.buf.p, r.edges.buf.p, r.edge_offsets.buf.p,
            r.scopes.p, params ? r.param_count.buf.p : Py_None);
        if (!out) throw nb::python_error();
        return nb::steal(out);
    } catch (const Unsupported &) {
        PyErr_Clear();
        return nb::none();
    } catch (const PyError &) {
        throw nb::python_error();
    }
}

}  // namespace

NB_MODULE(_nodes, m) {
    intern_names();
    m.doc() = "Compiled node reader behind costmodel.ir.node_columns (private).";
    m.attr("READER_VERSION") = READER_VERSION;
    m.def("read_nodes", &read_nodes, nb::arg("graphs"), nb::arg("kind_id"), nb::arg("dtype_bytes"),
          nb::arg("params") = true,
          "Facts of every node of `graphs` as flat buffers (`params`: with the parameter-operand counts), or "
          "None where the Python reader must answer.");
}
