"""llama.cpp's OpenAI-compatible server (xllamacpp's llama-server) on loopback, for
the openai engine's tests: ``python -m tests.llama_server MODEL ALIAS PORT N_CTX``
(ALIAS: the model name it serves), with the API key it demands in
$LLAMA_API_KEY. Runs until it is terminated."""

from __future__ import annotations

import os
import signal
import sys


def main(model: str, alias: str, port: str, n_ctx: str) -> None:
    import xllamacpp

    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # before the server's threads start: they inherit it
    params = xllamacpp.CommonParams()
    params.model.path = model
    params.model_alias = {alias}
    params.port = int(port)
    params.n_ctx = int(n_ctx)
    params.n_parallel = 1
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.api_keys = [os.environ["LLAMA_API_KEY"]]
    params.verbosity = -1
    params.warmup = False
    server = xllamacpp.Server(params)
    print(server.listening_address, flush=True)
    signal.sigwait(stop)


if __name__ == "__main__":
    main(*sys.argv[1:])
