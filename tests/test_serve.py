"""`mgsrgan serve`: every API endpoint and every error code, on tiny x2 members made here (tests/serve_helpers.py).

Results are checked against what `inference.py` computes from the same files (the Upscaler), so the server
cannot drift from the command line."""
from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from mgsrgan.cli import serve as serve_cli
from mgsrgan.infer.upscaler import Upscaler
from mgsrgan.io.images import from_pil
from mgsrgan.serve.app import ServeLimits, create_app
from tests.serve_helpers import decode, image_bytes, tiny_bank


@pytest.fixture()
def bank(tmp_path):
    return tiny_bank(tmp_path / "run")


@pytest.fixture()
def client(bank):
    with TestClient(create_app([bank], ServeLimits(max_upload_bytes=200_000, max_pixels=5_000, queue_size=2,
                                                   max_jobs=2))) as test_client:
        yield test_client


def upload(client, data=None, name="x.png", params=None, **form):
    data = image_bytes() if data is None else data
    return client.post("/v1/upscale", files={"image": (name, data, "image/png")},
                       data={k: str(v) for k, v in form.items()}, params=params or {})


def cli_output(run, data, **options) -> np.ndarray:
    """What inference.py writes for these bytes (Upscaler.from_run, fp32), as an 8-bit array."""
    lr_img, info = from_pil(decode(data))
    upscaler = Upscaler.from_run(run, device="cpu", precision="fp32", **options)
    from mgsrgan.io.images import to_pil
    return np.asarray(to_pil(upscaler.upscale_tensor(lr_img), info), dtype=np.int16)


def assert_error(response, status, *words):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert "Traceback" not in body["error"] and "/tmp" not in body["error"]
    for word in words:
        assert word in body["error"], body["error"]


def test_docs_page_loads_every_asset_from_this_server(client):
    """/docs works offline: every script, stylesheet and icon it names is a local path that answers 200, and the
    OpenAPI document it loads is served too."""
    import re

    page = client.get("/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(r"url: '([^']+)'", page.text)
    assert len(urls) >= 4, urls  # css, icon, js, openapi.json
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        assert client.get(url).status_code == 200, url
    assert client.get("/openapi.json").json()["paths"].keys() >= {"/v1/upscale", "/v1/jobs", "/v1/models"}
    assert client.get("/redoc").status_code == 404  # ReDoc would load from a CDN: not offered


def test_health_and_models(client):
    assert client.get("/healthz").json() == {"status": "ok", "queue": {"pending": 0, "capacity": 2}}
    models = client.get("/v1/models").json()
    assert models["default_scale"] == 2 and "consensus" in models["strategies"]
    (ensemble,) = models["ensembles"]
    assert ensemble["scale"] == 2 and ensemble["checkpoints"] == ["pretrain", "gan"]
    assert ensemble["pretrain"]["val_psnr_db"] == [24.0, 25.0, 24.5]
    assert ensemble["gan"]["val_stlpips_alex"] == [0.02, 0.03, 0.05]
    assert "/tmp" not in str(models)  # a run's name, never a server path
    assert client.get("/docs").status_code == 200 and "/v1/upscale" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("form, options", [
    ({}, {"checkpoint": "pretrain"}),
    ({"strategy": "median"}, {"checkpoint": "pretrain", "strategy": "median"}),
    ({"strategy": "consensus"}, {"checkpoint": "pretrain", "strategy": "consensus"}),
    ({"checkpoint": "gan"}, {"checkpoint": "gan"}),  # the texture-preserving mean: the CLI default (scored members)
    ({"checkpoint": "gan", "strategy": "perceptual"}, {"checkpoint": "gan", "strategy": "perceptual"}),
    ({"alpha": 0.5}, {"checkpoint": "pretrain", "alpha": 0.5}),
    ({"alpha": 1.0, "adaptive": 0.8}, {"checkpoint": "pretrain", "alpha": 1.0, "adaptive_c0": 0.8}),
    ({"alpha": 1.0, "guided": 0.5}, {"checkpoint": "pretrain", "alpha": 1.0, "guided_tau": 0.5}),
])
def test_upscale_matches_the_cli(client, tmp_path, form, options):
    data = image_bytes((23, 17))
    response = upload(client, data, **form)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    out = np.asarray(decode(response.content), dtype=np.int16)
    assert out.shape == (34, 46, 3)
    assert np.abs(out - cli_output(tmp_path / "run", data, **options)).max() <= 1


def test_strategies_differ(client):
    outs = [np.asarray(decode(upload(client, strategy=s).content), dtype=np.int16) for s in ("mean", "best")]
    assert np.abs(outs[0] - outs[1]).max() > 2  # the form field reaches the ensemble


@pytest.mark.parametrize("mode, fmt, expect", [("RGBA", "png", "RGBA"), ("L", "png", "L"), ("I;16", "png", "I;16"),
                                               ("RGB", "webp", "RGB"), ("RGB", "jpeg", "RGB")])
def test_kinds_and_formats_kept(client, mode, fmt, expect):
    response = upload(client, image_bytes(mode=mode), format=fmt)
    assert response.status_code == 200
    assert response.headers["content-type"] == f"image/{fmt}"
    img = decode(response.content)
    assert img.size == (40, 28) and img.mode == expect and img.format == fmt.upper()
    if mode == "RGBA":  # the alpha ramp, upscaled
        alpha = np.asarray(img.getchannel("A"), dtype=float)
        assert alpha[:, 0].mean() < 20 and alpha[:, -1].mean() > 235


def test_uncertainty_map(client, bank):
    response = upload(client, params={"uncertainty": "1"})
    assert response.status_code == 200
    img = decode(response.content)
    assert img.size == (40, 28) and img.mode == "RGB"
    assert np.asarray(img).std() > 0  # tiny random members disagree unevenly


@pytest.mark.parametrize("data, name, words", [
    (b"hello, not an image", "notes.txt", ["notes.txt", "not an image"]),
    (image_bytes()[:60], "cut.png", ["cut.png"]),
    (b"", "empty.png", ["empty.png", "empty"]),
    (image_bytes((100, 60)), "big.png", ["6000 pixels", "over the limit", "--max-pixels"]),
    (b"nope", "../../etc/passwd", ["passwd", "not an image"]),  # a client's path is only a name in a message
])
def test_bad_uploads_are_400(client, data, name, words):
    response = upload(client, data, name=name)
    assert_error(response, 400, *words)
    assert ".." not in response.json()["error"]


@pytest.mark.parametrize("form, words", [
    ({"strategy": "avg"}, ["unknown strategy 'avg'", "mean, median, weighted, perceptual, best, consensus"]),
    ({"alpha": 1.5}, ["alpha must be in [0, 1]"]),
    ({"checkpoint": "gan", "alpha": 0.5}, ["checkpoint pretrain"]),
    ({"adaptive": 0.5}, ["adaptive", "alpha > 0"]),
    ({"alpha": 1.0, "adaptive": 2}, ["adaptive", "[0, 1]"]),
    ({"guided": 0.5}, ["guided", "alpha > 0"]),
    ({"alpha": 1.0, "adaptive": 0.8, "guided": 0.5}, ["not both"]),
    ({"checkpoint": "best"}, ["unknown checkpoint 'best'", "pretrain, gan"]),
    ({"format": "gif"}, ["png, webp, jpeg"]),
    ({"scale": 4}, ["scale 4", "x2"]),
    ({"checkpoint": "gan", "strategy": "weighted"}, []),  # gan members have PSNRs: allowed
    ({"strategy": "texture"}, ["strategy 'texture' is for the GAN members"]),  # the pixel-loss side has no P
])
def test_bad_parameters(client, form, words):
    response = upload(client, **form)
    if not words:
        assert response.status_code == 200
        return
    assert_error(response, 400, *words)


def test_malformed_forms_are_422(client):
    assert_error(client.post("/v1/upscale", data={"alpha": "0.5"}), 422, "image")
    assert_error(upload(client, alpha="much"), 422, "alpha")


def test_byte_limit_is_413(client):
    big = image_bytes() + b"\0" * 250_000
    assert_error(upload(client, big), 413, "200000 bytes")

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(30):
            yield b"x" * 10_000
    response = client.post("/v1/upscale", content=chunks(),
                           headers={"content-type": "multipart/form-data; boundary=b"})
    assert_error(response, 413, "upload over the limit")


def test_full_queue_is_429_with_retry_after(client):
    queue, release = client.app.state.queue, threading.Event()
    for _ in range(queue.capacity):
        queue.submit(release.wait)
    try:
        response = upload(client)
        assert_error(response, 429, "busy")
        assert int(response.headers["retry-after"]) >= 1
        assert client.get("/healthz").json()["queue"]["pending"] == 2
    finally:
        release.set()
    for _ in range(100):
        if queue.pending == 0:
            break
        time.sleep(0.02)
    assert upload(client).status_code == 200


def test_shutdown_is_503_and_internal_errors_hide_details(bank, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals at /srv/weights")
    monkeypatch.setattr(type(bank), "run", broken)
    client = TestClient(create_app([bank]), raise_server_exceptions=False)  # as a real server: log, answer 500
    assert_error(upload(client), 500, "internal server error")
    assert "secret" not in upload(client).text
    client.app.state.queue.close()
    assert_error(upload(client), 503, "shutting down")


def wait_done(client, job_id):
    for _ in range(500):
        progress = client.get(f"/v1/jobs/{job_id}").json()
        if progress["status"] in ("done", "failed"):
            return progress
        time.sleep(0.02)
    raise AssertionError("job did not finish")


def test_job_progress_and_views_from_the_cache(client, tmp_path, bank):
    data = image_bytes((23, 17))
    response = client.post("/v1/jobs", files={"image": ("a.png", data, "image/png")})
    assert response.status_code == 202
    job = response.json()
    assert job["input_size"] == [23, 17] and job["output_size"] == [46, 34]
    progress = wait_done(client, job["id"])
    assert progress["status"] == "done" and progress["tiles_done"] == progress["tiles_total"] == 9  # 8 px tiles

    def view(**params):
        got = client.get(f"/v1/jobs/{job['id']}/image", params=params)
        assert got.status_code == 200, got.text
        return np.asarray(decode(got.content), dtype=np.int16)
    run = tmp_path / "run"
    for params, options in (({}, {"checkpoint": "pretrain"}), ({"alpha": 0.7}, {"checkpoint": "pretrain", "alpha": 0.7}),
                            ({"checkpoint": "gan", "strategy": "median"}, {"checkpoint": "gan", "strategy": "median"})):
        # the cache holds float16 member outputs: within one 8-bit level of the CLI
        assert np.abs(view(**params) - cli_output(run, data, **options)).max() <= 1
    member = view(kind="member", checkpoint="gan", member=2)
    single = Upscaler(bank.sides["gan"].generators[2], device="cpu", precision="fp32")
    lr_img, info = from_pil(decode(data))
    expected = (single.upscale_tensor(lr_img).permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(member - expected).max() <= 1
    assert view(kind="uncertainty").shape == (34, 46, 3)
    bicubic = view(kind="bicubic")
    assert bicubic.shape == (34, 46, 3) and np.abs(bicubic - member).mean() > 1
    assert_error(client.get(f"/v1/jobs/{job['id']}/image", params={"kind": "member", "member": 3}), 400, "0..2")
    assert_error(client.get(f"/v1/jobs/{job['id']}/image", params={"kind": "sketch"}), 400, "unknown view")


def test_jobs_unknown_unfinished_and_evicted(client):
    assert_error(client.get("/v1/jobs/nope"), 404, "not found")
    queue, release = client.app.state.queue, threading.Event()
    queue.submit(release.wait)
    try:
        job = client.post("/v1/jobs", files={"image": ("a.png", image_bytes(), "image/png")}).json()
        assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"
        assert_error(client.get(f"/v1/jobs/{job['id']}/image"), 409, "queued")
        assert_error(client.post("/v1/jobs", files={"image": ("a.png", image_bytes(), "image/png")}), 429, "busy")
    finally:
        release.set()
    assert wait_done(client, job["id"])["status"] == "done"
    for _ in range(2):  # max_jobs = 2: two newer jobs push the first out
        wait_done(client, client.post("/v1/jobs", files={"image": ("b.png", image_bytes(), "image/png")}).json()["id"])
    assert_error(client.get(f"/v1/jobs/{job['id']}"), 404, "upload again")


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="split"' in page.text and "/static/app.js" in page.text
    assert "createImageBitmap" in client.get("/static/app.js").text


def test_cli_refuses_bad_flags_and_busy_ports(capsys):
    assert serve_cli.main(["--queue-size", "0"]) == 2
    assert "--queue-size must be > 0" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert serve_cli.main(["--port", str(port), "--scale", "2"]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert serve_cli.is_loopback("127.0.0.1") and serve_cli.is_loopback("::1") and serve_cli.is_loopback("localhost")
    assert not serve_cli.is_loopback("0.0.0.0") and not serve_cli.is_loopback("192.168.1.4")


def test_bank_runs_tiles_exactly(bank):
    lr_img = torch.rand(3, 13, 21)
    seen = []
    tiled = bank.run(lr_img, ("pretrain",), on_tile=lambda done, total: seen.append((done, total)))["pretrain"]
    whole = [g(lr_img[None])[0] for g in bank.sides["pretrain"].generators]
    assert seen[-1] == (6, 6) and [d for d, _ in seen] == list(range(1, 7))
    assert torch.allclose(tiled, torch.stack(whole), atol=1e-5)


def test_job_store_keeps_within_count_and_bytes():
    from mgsrgan.io.images import ImageInfo
    from mgsrgan.serve.jobs import JobStore, PageJob
    info = ImageInfo("RGB", "PNG", None, None)

    def job() -> PageJob:
        return PageJob(scale=2, lr_img=torch.zeros(3, 10, 10), info=info, self_ensemble=False)  # 1200 bytes
    store = JobStore(capacity=3, max_bytes=5000)
    jobs = [job() for _ in range(4)]
    for j in jobs:
        store.add(j)
    assert [store.get(j.id) is not None for j in jobs] == [False, True, True, True]  # count: oldest dropped
    jobs[3].outputs = {"pretrain": torch.zeros(3, 3, 20, 20, dtype=torch.float16)}  # +7200 bytes
    store.trim()
    assert [store.get(j.id) is not None for j in jobs] == [False, False, False, True]  # bytes: the newest stays
    assert store.nbytes() == 1200 + 7200


def test_bank_without_a_run_loads_the_shipped_members_where_mgsrgan_weights_points(tmp_path, monkeypatch):
    """The server finds the shipped ensembles by the same lookup as inference.py (infer/ensemble.py: shipped_root)."""
    from mgsrgan.io.checkpoint import Side
    from mgsrgan.serve.members import load_bank
    from tests.serve_helpers import save_serve_run

    save_serve_run(tmp_path / "weights" / "x2")
    monkeypatch.setenv("MGSRGAN_WEIGHTS", str(tmp_path / "weights"))
    bank = load_bank(scale=2, run=None, device="cpu", precision="fp32", tile=8)
    assert set(bank.sides) == {Side.PIXEL, Side.GAN} and len(bank.sides[Side.PIXEL].generators) == 3
    assert sum(p.numel() for p in bank.sides[Side.PIXEL].generators[0].parameters()) < 10 ** 5  # the tiny ones


@pytest.fixture()
def clean_and_real_banks(tmp_path, monkeypatch):
    """$MGSRGAN_WEIGHTS with a tiny x2/ and x2-real/ (other seeds), loaded as `mgsrgan serve` loads them."""
    from mgsrgan.serve.members import load_banks
    from tests.serve_helpers import save_serve_run

    save_serve_run(tmp_path / "weights" / "x2")
    save_serve_run(tmp_path / "weights" / "x2-real", seed_offset=40)
    monkeypatch.setenv("MGSRGAN_WEIGHTS", str(tmp_path / "weights"))
    return load_banks([2], device="cpu", precision="fp32", tile=8)


def test_real_field_picks_the_real_photo_bank_and_models_show_the_flag(tmp_path, clean_and_real_banks):
    assert [(bank.scale, bank.real) for bank in clean_and_real_banks] == [(2, False), (2, True)]
    data = image_bytes()
    with TestClient(create_app(clean_and_real_banks)) as client:
        ensembles = client.get("/v1/models").json()["ensembles"]
        assert [(e["scale"], e["real"], e["source"]) for e in ensembles] == [
            (2, False, "shipped weights/x2"), (2, True, "shipped weights/x2-real")]
        real = upload(client, data, real="true")
        clean = upload(client, data, real="false")
        assert real.status_code == 200 and clean.status_code == 200
        real_img = np.asarray(decode(real.content), dtype=np.int16)
        assert np.array_equal(real_img, cli_output(tmp_path / "weights" / "x2-real", data, checkpoint="pretrain"))
        assert np.abs(real_img - np.asarray(decode(clean.content), dtype=np.int16)).max() > 1
        # the page's path: a job on the real bank renders the same image
        job = client.post("/v1/jobs", files={"image": ("x.png", data, "image/png")}, data={"real": "true"}).json()
        assert job["real"] is True
        for _ in range(200):
            if client.get(f"/v1/jobs/{job['id']}").json()["status"] == "done":
                break
            time.sleep(0.05)
        view = client.get(f"/v1/jobs/{job['id']}/image")  # float16 cache: within one 8-bit level
        assert np.abs(np.asarray(decode(view.content), dtype=np.int16) - real_img).max() <= 1


def test_real_without_a_real_bank_is_a_400_naming_what_is_loaded(client):
    assert client.get("/v1/models").json()["ensembles"][0]["real"] is False
    assert_error(upload(client, real="true"), 400, "real", "x2")
    response = client.post("/v1/jobs", files={"image": ("x.png", image_bytes(), "image/png")}, data={"real": "true"})
    assert_error(response, 400, "no real-photo ensemble for x2", "this server has x2")


def test_serve_loads_no_real_bank_where_its_folder_is_absent(tmp_path, monkeypatch):
    from mgsrgan.serve.members import load_banks
    from tests.serve_helpers import save_serve_run

    save_serve_run(tmp_path / "weights" / "x2")
    monkeypatch.setenv("MGSRGAN_WEIGHTS", str(tmp_path / "weights"))
    assert [(b.scale, b.real) for b in load_banks([2], device="cpu", precision="fp32", tile=8)] == [(2, False)]
