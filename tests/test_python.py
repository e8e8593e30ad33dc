"""test_python.py — the Python module python/ecr against the command line, run by
tests/cli_python.sh (which trains the models and sets ECR_TEST_DIR, ECR_BIN and ECR_LIB):

  - Model.embed gives the bytes of `ecr embed --text` (u and raw h), for str and bytes;
  - Model.perplexity and bits_per_byte are `ecr eval`'s numbers on the same texts;
  - Model.generate is `ecr generate`'s text, greedy and sampled with a seed;
  - bad input raises ecr.Error carrying the library's message (a folder that is not a Llama
    of ecr's, a missing folder, an empty text, invalid UTF-8, a lone surrogate, a prompt
    longer than the context), TypeError / ValueError for wrong Python arguments; never a
    crash, and the model works after each;
  - the GIL is released during compute (another thread runs meanwhile), and one Model used
    from several threads at once gives the same rows as alone.
Prints "test_python: N passed, F failed" and exits 1 on any failure.
"""
import json
import os
import subprocess
import sys
import threading
import time
import unittest

import numpy as np

import ecr

DIR = os.environ["ECR_TEST_DIR"]
ECR_BIN = os.environ["ECR_BIN"]
M = os.path.join(DIR, "m")          # a model with an ECR projection (ecr_dim 12)
PLAIN = os.path.join(DIR, "plain")  # the same without one
TEXTS = [l.rstrip("\n") for l in open(os.path.join(DIR, "t.txt"), encoding="utf-8")]


def run(*args):
    return subprocess.run([ECR_BIN] + list(args), check=True, capture_output=True).stdout


def npy(path):
    return np.load(path)


class TestNumbers(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        ecr.set_threads(1)
        cls.m = ecr.Model(M)
        cls.plain = ecr.Model(PLAIN)

    def test_model(self):
        self.assertEqual(self.m.dim, 32)
        self.assertEqual(self.m.projection_dim, 12)
        self.assertEqual(self.plain.projection_dim, 0)
        self.assertEqual(self.m.config["n_layers"], 1)
        self.assertIn("ecr.Model", repr(self.m))
        self.assertEqual(ecr.get_threads(), 1)

    def test_embed_is_the_cli(self):
        t = os.path.join(DIR, "t.txt")
        for raw in (False, True):
            out = os.path.join(DIR, "py_%d.npy" % raw)
            run("embed", "--model", M, "--text", t, "--out", out, "--threads", "1", "--quiet", *(["--raw"] if raw else []))
            want = npy(out)
            got = self.m.embed(TEXTS, raw=raw)
            self.assertEqual(got.dtype, np.float32)
            self.assertEqual(got.shape, (len(TEXTS), 32 if raw else 12))
            self.assertEqual(got.tobytes(), want.tobytes(), "raw=%s" % raw)
        # bytes in: the same rows
        got = self.m.embed([s.encode() for s in TEXTS], raw=True)
        self.assertEqual(got.tobytes(), npy(os.path.join(DIR, "py_1.npy")).tobytes())
        # a model without projection gives h
        h_plain = self.plain.embed(TEXTS[:50])
        out = os.path.join(DIR, "py_plain.npy")
        with open(os.path.join(DIR, "t50.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(TEXTS[:50]) + "\n")
        run("embed", "--model", PLAIN, "--text", os.path.join(DIR, "t50.txt"), "--out", out, "--threads", "1", "--quiet")
        self.assertEqual(h_plain.tobytes(), npy(out).tobytes())
        self.assertEqual(self.plain.embed([s.encode() for s in TEXTS[:50]]).tobytes(), h_plain.tobytes())
        # u has unit rows; a text alone equals its row in the packed run (to fp32 rounding)
        u = self.m.embed(TEXTS)
        self.assertLess(np.abs(np.linalg.norm(u, axis=1) - 1).max(), 1e-5)
        self.assertLess(np.abs(self.m.embed([TEXTS[17]])[0] - u[17]).max(), 1e-5)
        self.assertEqual(self.m.embed([]).shape, (0, 12))
        self.assertEqual(self.m.embed([], raw=True).shape, (0, 32))

    def test_perplexity_is_eval(self):
        js = os.path.join(DIR, "eval.json")
        run("eval", "--model", M, "--data", os.path.join(DIR, "t.st"), "--json", js, "--threads", "1", "--quiet")
        ev = json.load(open(js))
        overall = ev["lm"]["overall"] if "lm" in ev else ev["overall"]
        ppl = self.m.perplexity(TEXTS)
        bpb = self.m.bits_per_byte(TEXTS)
        self.assertAlmostEqual(ppl, overall["ppl"], delta=1e-6 * overall["ppl"])
        self.assertAlmostEqual(bpb, overall["bpb"], delta=1e-6)
        self.assertGreater(ppl, 1.0)

    def test_generate_is_the_cli(self):
        for prompt, kw, flags in (("Click the", dict(temperature=0, max_tokens=24), ["--temperature", "0", "--max-tokens", "24"]),
                                  ("Klicken Sie", dict(temperature=0.9, top_k=20, top_p=0.9, seed=5, max_tokens=30),
                                   ["--temperature", "0.9", "--top-k", "20", "--top-p", "0.9", "--seed", "5", "--max-tokens", "30"]),
                                  ("", dict(seed=3, max_tokens=10), ["--seed", "3", "--max-tokens", "10"])):
            want = run("generate", "--model", M, "--prompt", prompt, "--threads", "1", "--quiet", *flags).decode()
            got = self.m.generate(prompt, **kw)
            self.assertEqual(prompt + got + "\n", want, kw)
        full = self.m.generate("Click", temperature=0, max_tokens=40, stop_at_eot=False)
        self.assertGreater(len(self.m.tokenize(full)), 0)
        enc = subprocess.run([ECR_BIN, "tokenizer", "encode", "--tokenizer", os.path.join(M, "tokenizer.json")],
                             input="Click the Outline tab\n".encode(), check=True, capture_output=True).stdout
        self.assertEqual(self.m.tokenize("Click the Outline tab"), [int(x) for x in enc.split()])


class TestBadInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = ecr.Model(M)

    def error(self, fn, *want, status=-1):
        with self.assertRaises(ecr.Error) as cm:
            fn()
        for w in want:
            self.assertIn(w, str(cm.exception))
        self.assertEqual(cm.exception.status, status)
        self.assertTrue(cm.exception.status_name)
        return cm.exception

    def test_folders(self):
        self.error(lambda: ecr.Model(os.path.join(DIR, "bert")), "bert/config.json", 'model_type must be "llama"')
        self.error(lambda: ecr.Model(os.path.join(DIR, "nothing")), "nothing/config.json", status=-2)
        self.error(lambda: ecr.Model(os.path.join(DIR, "notok")), "notok/tokenizer.json", status=-2)
        self.error(lambda: ecr.Model(M, precision="fp16"), "fp16")

    def test_texts(self):
        self.error(lambda: self.m.embed(["fine", "", "also fine"]), "text 2: empty")
        self.error(lambda: self.m.embed(["fine", b"caf\xe9"]), "text 2: invalid UTF-8 at byte 3")
        self.error(lambda: self.m.embed(["a", "b", "lone \udcff surrogate"]), "text 3: invalid UTF-8")
        self.error(lambda: self.m.perplexity(["ok", ""]), "text 2: empty")
        self.error(lambda: self.m.perplexity([]), "no texts")
        self.error(lambda: self.m.generate("x" * 5000), "longer than the context")
        self.error(lambda: self.m.generate(b"\xff\xfe".decode("utf-8", "surrogateescape")), "prompt: invalid UTF-8")
        self.error(lambda: self.m.embed(TEXTS[:3], seq_len=100000), "seq_len")
        with self.assertRaises(TypeError):
            self.m.embed("one string")
        with self.assertRaises(TypeError):
            self.m.embed(["ok", 3])
        with self.assertRaises(ValueError):
            self.m.generate("x", temperature=-1)
        with self.assertRaises(ValueError):
            self.m.generate("x", top_p=0)
        with self.assertRaises(ValueError):
            ecr.set_threads(-1)
        # still works after all that
        self.assertEqual(self.m.embed(TEXTS[:2]).shape, (2, 12))

    def test_closed(self):
        m = ecr.Model(M)
        with m:
            m.embed(TEXTS[:1])
        with self.assertRaises(ValueError):
            m.embed(TEXTS[:1])
        m.close()


class TestThreads(unittest.TestCase):
    def test_gil_released(self):
        m = ecr.Model(M)
        many = TEXTS * 10
        t0 = time.perf_counter()
        m.embed(many)
        alone = time.perf_counter() - t0
        started, done = threading.Event(), threading.Event()
        box = {}

        def work():
            started.set()
            box["u"] = m.embed(many)
            done.set()

        th = threading.Thread(target=work)
        th.start()
        started.wait()
        spins, t0 = 0, time.perf_counter()
        while not done.is_set():
            spins += 1
        th.join()
        # With the GIL held for the call, this thread could not have run while it lasted
        # (~%.2f s alone); released, it spins millions of times meanwhile.
        self.assertGreater(spins, 10000, "the GIL seems held during embed (%d spins, call %.2f s)" % (spins, alone))
        self.assertEqual(box["u"].tobytes(), m.embed(many).tobytes())

    def test_one_model_many_threads(self):
        m = ecr.Model(M)
        want = m.embed(TEXTS)
        out = [None] * 4

        def work(i):
            out[i] = m.embed(TEXTS)

        ths = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        for o in out:
            self.assertEqual(o.tobytes(), want.tobytes())


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    res = unittest.TextTestRunner(verbosity=1, stream=sys.stderr).run(suite)
    failed = len(res.failures) + len(res.errors)
    print("test_python: %d passed, %d failed" % (res.testsRun - failed, failed))
    sys.exit(1 if failed or res.testsRun == 0 else 0)
