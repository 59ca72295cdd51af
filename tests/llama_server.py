"""llama.cpp's OpenAI-compatible server (xllamacpp's llama-server) on loopback, for
the openai engine's tests: ``python -m tests.llama_server MODEL ALIAS PORT N_CTX``
(ALIAS: the model name it serves), with the API key it demands in
$LLAMA_API_KEY. Runs until it is terminated."""

from __future__ import annotations

import os
import signal
import sys


def params(model: str, n_ctx: int):
    """A quiet one-slot, one-thread llama-server for tests, on a free loopback port by default."""
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = model
    p.n_ctx = n_ctx
    p.n_parallel = 1
    p.cpuparams.n_threads = 1
    p.cpuparams_batch.n_threads = 1
    p.verbosity = -1
    p.warmup = False
    return p


def main(model: str, alias: str, port: str, n_ctx: str) -> None:
    import xllamacpp

    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # before the server's threads start: they inherit it
    p = params(model, int(n_ctx))
    p.model_alias = {alias}
    p.port = int(port)
    p.api_keys = [os.environ["LLAMA_API_KEY"]]
    server = xllamacpp.Server(p)
    print(server.listening_address, flush=True)
    signal.sigwait(stop)


if __name__ == "__main__":
    main(*sys.argv[1:])
