"""llama.cpp's own tokenizer and chat template, the references our GGUF profile is
checked against: xllamacpp's llama-server, in this process, over loopback HTTP
(``/tokenize``, ``/apply-template``)."""

from __future__ import annotations

import functools
import json
import urllib.request


@functools.lru_cache(maxsize=2)
def _server(path: str):
    import xllamacpp

    from tests.llama_server import params

    return xllamacpp.Server(params(path, 512))


def _post(path: str, endpoint: str, body: dict) -> dict:
    url = _server(path).listening_address + endpoint
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def llama_cpp_tokenize(path: str, text: str, special: bool) -> list[int]:
    """``special``: marker strings in the text become their tokens (as for a rendered template)."""
    return _post(path, "/tokenize", {"content": text, "parse_special": special, "add_special": False})["tokens"]


def llama_cpp_template(path: str, system: str, user: str) -> str:
    """The GGUF's chat template as llama.cpp renders it, with the generation prompt."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return _post(path, "/apply-template", {"messages": messages})["prompt"]
