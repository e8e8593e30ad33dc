"""ecr: Python bindings for libecr, the C library behind the `ecr` command-line tool.

A thin ctypes layer over ``libecr.so`` (built by ``make`` beside ``build/ecr``): no compiler
is needed at import, and every number comes from the same C code as the command line, so
``Model.embed`` gives the bytes of ``ecr embed --text`` and ``Model.perplexity`` the
perplexity of ``ecr eval`` on the same texts (with the same threads and precision).

    import ecr, numpy as np
    model = ecr.Model("student/")
    e = model.embed(["Click the Outline tab.", "Klicken Sie auf das Register Gliederung."])
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    print(e @ e.T)

The library is found through the environment variable ``ECR_LIB`` (a path to libecr.so),
else beside this package, else in the repository's ``build/`` folder two levels up.
Failures inside the library raise :class:`ecr.Error` with the library's one-line message.
Calls release the GIL while the library computes, so other Python threads keep running;
one :class:`Model` serves one call at a time (calls from several threads wait their turn).
"""
import ctypes
import os
import threading

import numpy as np

__all__ = ["Model", "Error", "set_threads", "get_threads", "library_path", "version"]

# ---- the library ------------------------------------------------------------------------


def _find_library():
    env = os.environ.get("ECR_LIB")
    if env:
        if not os.path.isfile(env):
            raise ImportError("ecr: ECR_LIB=%s: no such file (unset it to use build/libecr.so)" % env)
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    tried = [os.path.join(here, "libecr.so"), os.path.normpath(os.path.join(here, "..", "..", "build", "libecr.so"))]
    for path in tried:
        if os.path.isfile(path):
            return path
    raise ImportError("ecr: libecr.so not found (looked at %s): run `make` in the ecr repository, "
                      "or set ECR_LIB to the library's path" % ", ".join(tried))


library_path = _find_library()
# CDLL, not PyDLL: ctypes releases the GIL around every call into a CDLL and takes it back
# when the call returns, so the library computes while other Python threads run. (The token
# callback of generate() takes the GIL back for the moment it runs.)
_lib = ctypes.CDLL(library_path)

_c_int, _c_int32, _c_int64, _c_size = ctypes.c_int, ctypes.c_int32, ctypes.c_int64, ctypes.c_size_t
_c_float, _c_double, _c_char_p, _c_void_p = ctypes.c_float, ctypes.c_double, ctypes.c_char_p, ctypes.c_void_p
_P = ctypes.POINTER


class _Config(ctypes.Structure):  # ecr_config
    _fields_ = [("vocab_size", _c_int), ("dim", _c_int), ("n_layers", _c_int), ("n_heads", _c_int),
                ("hidden_dim", _c_int), ("max_seq_len", _c_int), ("rope_theta", _c_float),
                ("norm_eps", _c_float), ("tied", _c_int), ("ecr_dim", _c_int)]


class _EmbedOpts(ctypes.Structure):  # ecr_embed_opts
    _fields_ = [("raw", _c_int), ("seq_len", _c_int), ("tokens_per_batch", _c_int64), ("quiet", _c_int),
                ("comm", _c_void_p)]


class _GenOpts(ctypes.Structure):  # ecr_gen_opts
    _fields_ = [("max_tokens", _c_int), ("temperature", _c_float), ("top_k", _c_int), ("top_p", _c_float),
                ("seed", ctypes.c_uint64)]


class _LmStats(ctypes.Structure):  # ecr_lm_stats
    _fields_ = [("loss_sum", _c_double), ("tokens", _c_int64), ("bytes", _c_int64), ("texts", _c_int64)]


class _LmEval(ctypes.Structure):  # ecr_lm_eval
    _fields_ = [("overall", _LmStats), ("n_langs", _c_int), ("per_lang", _P(_LmStats)), ("n_truncated", _c_int64)]


_TOKEN_FN = ctypes.CFUNCTYPE(_c_int, _c_void_p, _c_int32)  # ecr_token_fn


def _proto(name, restype, *argtypes):
    f = getattr(_lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


_last_error = _proto("ecr_last_error", _c_char_p)
_status_name = _proto("ecr_status_name", _c_char_p, _c_int)
_set_threads = _proto("ecr_set_threads", None, _c_int)
_get_threads = _proto("ecr_get_threads", _c_int)
_free = _proto("ecr_free", None, _c_void_p)
_struct_size = _proto("ecr_struct_size", _c_size, _c_char_p)
# The structs above mirror ecr.h by hand: a library whose layout differs is refused here,
# before any call could read a field at the wrong place.
for _name, _cls in (("ecr_config", _Config), ("ecr_embed_opts", _EmbedOpts), ("ecr_gen_opts", _GenOpts),
                    ("ecr_lm_stats", _LmStats), ("ecr_lm_eval", _LmEval)):
    if _struct_size(_name.encode()) != ctypes.sizeof(_cls):
        raise ImportError("ecr: %s is %d bytes in %s but %d in this module: rebuild the library and the "
                          "module from the same sources" % (_name, _struct_size(_name.encode()), library_path,
                                                            ctypes.sizeof(_cls)))
_model_load = _proto("ecr_model_load", _c_int, _c_char_p, _P(_c_void_p))
_model_free = _proto("ecr_model_free", None, _c_void_p)
_model_config = _proto("ecr_model_config", _P(_Config), _c_void_p)
_model_find_tensor = _proto("ecr_model_find_tensor", _c_void_p, _c_void_p, _c_char_p)
_precision_parse = _proto("ecr_precision_parse", _c_int, _c_char_p, _P(_c_int))
_precision_name = _proto("ecr_precision_name", _c_char_p, _c_int)
_model_set_precision = _proto("ecr_model_set_precision", _c_int, _c_void_p, _c_int)
_model_precision = _proto("ecr_model_precision", _c_int, _c_void_p)
_tok_load = _proto("ecr_tokenizer_load", _c_int, _c_char_p, _P(_c_void_p))
_tok_free = _proto("ecr_tokenizer_free", None, _c_void_p)
_tok_vocab = _proto("ecr_tokenizer_vocab_size", _c_int, _c_void_p)
_tok_eot = _proto("ecr_tokenizer_eot_id", _c_int, _c_void_p)
_tok_encode = _proto("ecr_tokenizer_encode", _c_int, _c_void_p, _c_char_p, _c_size, _P(_c_int32), _c_size,
                     _P(_c_size))
_tok_decode = _proto("ecr_tokenizer_decode", _c_int, _c_void_p, _P(_c_int32), _c_size, _c_char_p, _c_size,
                     _P(_c_size))
_embed_opts_default = _proto("ecr_embed_opts_default", None, _P(_EmbedOpts))
_embed_texts = _proto("ecr_embed_texts", _c_int, _c_void_p, _c_void_p, _P(_c_char_p), _P(_c_size), _c_size,
                      _P(_EmbedOpts), _P(_P(_c_float)), _P(_c_int64), _P(_c_int))
_data_from_texts = _proto("ecr_data_from_texts", _c_int, _c_void_p, _P(_c_char_p), _P(_c_size), _c_size,
                          _P(_c_void_p))
_data_free = _proto("ecr_data_free", None, _c_void_p)
_eval_lm = _proto("ecr_eval_lm", _c_int, _c_void_p, _c_void_p, _c_int, _c_int64, _c_int, _P(_LmEval))
_lm_eval_release = _proto("ecr_lm_eval_release", None, _P(_LmEval))
_lm_ppl = _proto("ecr_lm_ppl", _c_double, _P(_LmStats))
_lm_bpb = _proto("ecr_lm_bpb", _c_double, _P(_LmStats))
_gen_opts_default = _proto("ecr_gen_opts_default", None, _P(_GenOpts))
_generate = _proto("ecr_generate", _c_int, _c_void_p, _P(_c_int32), _c_size, _c_int32, _P(_GenOpts), _TOKEN_FN,
                   _c_void_p, _P(_c_size))

version = "0.1.0"  # ECR_VERSION of include/ecr.h

# ---- errors -----------------------------------------------------------------------------


class Error(Exception):
    """A failure reported by libecr.

    ``str(e)`` is the library's one-line message (``ecr_last_error()``), which names the
    file, line, text or tensor at fault, e.g. ``"text 2: invalid UTF-8 at byte 3"``.
    ``status`` is the ``ecr_status`` code: -1 invalid input (what the command line exits
    2 for), -2 input/output, -3 out of memory, -4 runtime failure; ``status_name`` its name.
    """

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.status_name = _status_name(status).decode()


def _check(status):
    # ecr_last_error is thread-local in the library and ctypes calls run on the calling
    # thread, so the message read here is the one of this failure.
    if status != 0:
        raise Error(status, _last_error().decode("utf-8", "replace"))


_threads = None  # set_threads' count, applied again on the thread of each call


def set_threads(n):
    """Threads for the library's OpenMP and BLAS work (0 = all cores), for every later call
    from any Python thread; the numbers are deterministic for a given count and equal those
    of the command line's ``--threads n``. Without it, OpenMP's default applies
    (OMP_NUM_THREADS, else all cores)."""
    global _threads
    if not isinstance(n, int) or n < 0:
        raise ValueError("set_threads: a count >= 0, got %r" % (n,))
    _threads = n
    _set_threads(n)


def get_threads():
    """The thread count the library uses for a call from this thread."""
    _apply_threads()
    return _get_threads()


def _apply_threads():
    # OpenMP keeps its thread count per calling thread (a new Python thread starts with the
    # default), so the count of set_threads is set again on the thread that computes.
    if _threads is not None:
        _set_threads(_threads)


def _text_bytes(texts, what):
    """UTF-8 bytes of each text (str or bytes); the library refuses invalid UTF-8, naming the text."""
    if isinstance(texts, (str, bytes)):
        raise TypeError("%s: a list of texts, not one text (wrap it: [text])" % what)
    out = []
    for i, t in enumerate(texts):
        if isinstance(t, str):
            # surrogatepass: a lone surrogate becomes bytes that are not UTF-8, which the
            # library then refuses as "text N: invalid UTF-8 ..." like any other bad text.
            out.append(t.encode("utf-8", "surrogatepass"))
        elif isinstance(t, (bytes, bytearray)):
            out.append(bytes(t))
        else:
            raise TypeError("%s: text %d is %s, not str or bytes" % (what, i + 1, type(t).__name__))
    return out


def _c_texts(bufs):
    n = len(bufs)
    return (_c_char_p * max(n, 1))(*bufs), (_c_size * max(n, 1))(*[len(b) for b in bufs]), n


# ---- the model --------------------------------------------------------------------------


class Model:
    """A model folder of ecr (``ecr train --out``): config.json, model.safetensors and
    tokenizer.json, loaded into memory.

    ``Model(path, precision="auto")`` loads the folder; ``precision`` is "auto", "fp32" or
    "bf16" as ``--precision`` of the command line. A folder that is missing, not a Llama
    model of ecr's layout (another architecture, missing or misshapen tensors) or without
    its tokenizer raises :class:`ecr.Error` naming the file at fault.

    Attributes: ``path``; ``config`` (a dict of config.json's fields in ecr's names);
    ``dim`` (d, the width of h); ``projection_dim`` (D of the ECR projection, 0 without);
    ``precision`` ("fp32" or "bf16", resolved).

    Use it as a context manager, or call :meth:`close`, to free the memory at once.
    """

    def __init__(self, path, precision="auto"):
        self.path = os.fspath(path)
        self._m = _c_void_p()
        self._tok = _c_void_p()
        self._lock = threading.Lock()
        try:
            _check(_model_load(self.path.encode(), ctypes.byref(self._m)))
            _check(_tok_load(os.path.join(self.path, "tokenizer.json").encode(), ctypes.byref(self._tok)))
            p = _c_int()
            _check(_precision_parse(str(precision).encode(), ctypes.byref(p)))
            _check(_model_set_precision(self._m, p.value))
            c = _model_config(self._m).contents
            self.config = {k: getattr(c, k) for k, _ in _Config._fields_}
            if _tok_vocab(self._tok) > c.vocab_size:
                raise Error(-1, "%s: vocabulary of %d tokens, the model has %d" % (
                    os.path.join(self.path, "tokenizer.json"), _tok_vocab(self._tok), c.vocab_size))
        except BaseException:
            self.close()
            raise
        self.dim = self.config["dim"]
        self.projection_dim = self.config["ecr_dim"] if _model_find_tensor(self._m, b"ecr.proj.weight") else 0
        self.precision = _precision_name(_model_precision(self._m)).decode()

    def close(self):
        """Frees the model (further calls raise ValueError). Called by ``with`` and at
        garbage collection."""
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:
            if self._m:
                _model_free(self._m)
                self._m = _c_void_p()
            if self._tok:
                _tok_free(self._tok)
                self._tok = _c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # at interpreter exit the module's globals may be gone already
            pass

    def __repr__(self):
        return "ecr.Model(%r: %d layers x %d, projection %d, %s)" % (
            self.path, self.config["n_layers"], self.dim, self.projection_dim, self.precision)

    def _live(self):
        if not self._m:
            raise ValueError("ecr.Model: closed")

    def embed(self, texts, raw=False, batch_tokens=1024, seq_len=0):
        """Embeddings of raw texts: a float32 array of one row per text, in order.

        ``texts`` is a list (any sequence) of str or UTF-8 bytes, each encoded with the
        model's tokenizer as ``ecr prepare`` encodes it. The row is u = P h / |P h| through
        the model's ECR projection (unit length, ``projection_dim`` columns), or h, the mean
        of the final-norm output over the text's tokens (``dim`` columns), with ``raw=True``
        or when the model has no projection. The numbers are those of ``ecr embed --text``
        (and of ``ecr prepare`` + ``ecr embed --data``) with the same flags and threads, to
        the bit. ``batch_tokens`` and ``seq_len`` are ``--batch-tokens`` and ``--seq-len``.

        An empty text, invalid UTF-8 (also a str with a lone surrogate) and a text of 2 GiB
        or more raise :class:`ecr.Error` naming the text ("text 3: empty ...", 1-based); a
        bare str instead of a list, or an item that is neither str nor bytes, TypeError.
        """
        bufs = _text_bytes(texts, "embed")
        arr, lens, n = _c_texts(bufs)
        o = _EmbedOpts()
        _embed_opts_default(ctypes.byref(o))
        o.raw = 1 if raw else 0
        o.tokens_per_batch = int(batch_tokens)
        o.seq_len = int(seq_len)
        o.quiet = 1
        out = _P(_c_float)()
        cols = _c_int64()
        projected = _c_int()
        with self._lock:
            self._live()
            _apply_threads()
            _check(_embed_texts(self._m, self._tok, arr, lens, n, ctypes.byref(o), ctypes.byref(out),
                                ctypes.byref(cols), ctypes.byref(projected)))
        try:
            if n == 0:
                return np.zeros((0, cols.value), dtype=np.float32)
            return np.ctypeslib.as_array(out, shape=(n * cols.value,)).reshape(n, cols.value).copy()
        finally:
            _free(out)

    def perplexity(self, texts, batch_tokens=4096, seq_len=0):
        """Perplexity of the model on the texts: exp of the mean next-token cross-entropy
        over all their tokens (each text read as ``[EOT, t1..tn]`` predicting
        ``[t1..tn, EOT]``), the number ``ecr eval`` prints for the same texts. Texts longer
        than ``seq_len`` - 1 tokens (default: the model's context) count their first
        tokens only. Bad texts raise :class:`ecr.Error` as in :meth:`embed`; so does an
        empty list."""
        return self._eval(texts, batch_tokens, seq_len)[0]

    def bits_per_byte(self, texts, batch_tokens=4096, seq_len=0):
        """The same evaluation as :meth:`perplexity`, as bits per UTF-8 byte of the texts
        (``ecr eval``'s bits/byte, which does not depend on the tokenizer)."""
        return self._eval(texts, batch_tokens, seq_len)[1]

    def _eval(self, texts, batch_tokens, seq_len):
        bufs = _text_bytes(texts, "perplexity")
        arr, lens, n = _c_texts(bufs)
        data = _c_void_p()
        ev = _LmEval()
        with self._lock:
            self._live()
            _apply_threads()
            _check(_data_from_texts(self._tok, arr, lens, n, ctypes.byref(data)))
            try:
                _check(_eval_lm(self._m, data, int(seq_len), int(batch_tokens), 1, ctypes.byref(ev)))
                try:
                    return _lm_ppl(ctypes.byref(ev.overall)), _lm_bpb(ctypes.byref(ev.overall))
                finally:
                    _lm_eval_release(ctypes.byref(ev))
            finally:
                _data_free(data)

    def tokenize(self, text):
        """The token ids of one text (str or bytes), without the end-of-text token that
        opens every text (``ecr tokenizer encode``)."""
        (b,) = _text_bytes([text], "tokenize")
        with self._lock:
            self._live()
            cap = len(b) + 1
            ids = (_c_int32 * cap)()
            n = _c_size()
            _check(_tok_encode(self._tok, b, len(b), ids, cap, ctypes.byref(n)))
            return list(ids[:n.value])

    def generate(self, prompt, max_tokens=200, temperature=0.8, top_k=40, top_p=0.95, seed=1, stop_at_eot=True):
        """A continuation of ``prompt`` (str), as ``ecr generate``: the model reads the
        end-of-text token, then the prompt, and samples at most ``max_tokens`` new tokens
        with a KV cache, stopping at the end-of-text token (unless ``stop_at_eot`` is
        False) or when the context is full. ``temperature`` 0 is greedy; ``top_k`` 0 and
        ``top_p`` 1 turn those filters off; the same ``seed`` gives the same text as
        ``ecr generate --seed``. Returns the new text only (invalid UTF-8 of a character
        cut off by ``max_tokens`` is replaced by U+FFFD). A prompt longer than the context
        or with invalid UTF-8 raises :class:`ecr.Error`; out-of-range options ValueError."""
        if not isinstance(max_tokens, int) or max_tokens < 0:
            raise ValueError("generate: max_tokens must be an int >= 0, got %r" % (max_tokens,))
        if not temperature >= 0:
            raise ValueError("generate: temperature must be >= 0, got %r" % (temperature,))
        if not isinstance(top_k, int) or top_k < 0:
            raise ValueError("generate: top_k must be an int >= 0, got %r" % (top_k,))
        if not 0 < top_p <= 1:
            raise ValueError("generate: top_p must be in (0, 1], got %r" % (top_p,))
        if not isinstance(seed, int) or not 0 <= seed < 2 ** 64:
            raise ValueError("generate: seed must be an int in [0, 2^64), got %r" % (seed,))
        (b,) = _text_bytes([prompt], "generate")
        o = _GenOpts()
        _gen_opts_default(ctypes.byref(o))
        o.max_tokens, o.temperature, o.top_k, o.top_p, o.seed = max_tokens, temperature, top_k, top_p, seed
        got = []

        def on_token(ctx, tid):
            got.append(tid)
            return 0

        cb = _TOKEN_FN(on_token)
        with self._lock:
            self._live()
            cap = len(b) + 2
            ids = (_c_int32 * cap)()
            ids[0] = _tok_eot(self._tok)
            n = _c_size()
            st = _tok_encode(self._tok, b, len(b), ctypes.cast(ctypes.byref(ids, 4), _P(_c_int32)), cap - 1,
                             ctypes.byref(n))
            if st:
                raise Error(st, "prompt: " + _last_error().decode("utf-8", "replace"))
            eot = _tok_eot(self._tok) if stop_at_eot else -1
            _apply_threads()
            _check(_generate(self._m, ids, n.value + 1, eot, ctypes.byref(o), cb, None, None))
            return self._decode(got).decode("utf-8", "replace")

    def _decode(self, ids):
        arr = (_c_int32 * max(len(ids), 1))(*ids)
        need = _c_size()
        _check(_tok_decode(self._tok, arr, len(ids), None, 0, ctypes.byref(need)))
        buf = ctypes.create_string_buffer(need.value + 1)
        _check(_tok_decode(self._tok, arr, len(ids), buf, need.value + 1, ctypes.byref(need)))
        return buf.raw[:need.value]
