"""``unclip serve``: the JSON API in-process (FastAPI's test client), the batching worker, and
the docs' curl examples. Results are compared with the library called directly (the
reference: what the CLI draws for the same settings), never with the server's own output.
The page in a real browser and the load test over real sockets are in test_serve_live.py."""
from __future__ import annotations

import base64
import io
import json
import re
import shlex
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="unclip serve needs the 'serve' extra")
from fastapi.testclient import TestClient  # noqa: E402

from unclip_core.images import METADATA_KEY  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FAST = ["prior.sampler.config.steps=4", "decoder.sampler.config.steps=4", "upsamplers.0.sampler.config.steps=4"]
"""Few steps, so each request is quick; the server and the reference pipeline both use them."""


@pytest.fixture(scope="module")
def pipeline():
    from unclip_core.recipe.assemble import load_pipeline

    return load_pipeline("shapes", FAST)


@pytest.fixture(scope="module")
def client():
    from unclip_core.serve.app import create_app

    with TestClient(create_app(["shapes"], overrides=FAST)) as test_client:
        yield test_client


def decode(url: str) -> tuple[np.ndarray, dict]:
    assert url.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as image:
        image.load()
        return np.asarray(image.convert("RGB")).astype(int), json.loads(image.text.get(METADATA_KEY, "{}"))


def as_uint8(images) -> np.ndarray:  # noqa: ANN001 - PIL images or a [B, 3, H, W] tensor in [-1, 1]
    if isinstance(images, list):
        return np.stack([np.asarray(image).astype(int) for image in images])
    return ((images.clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy().astype(int)


def same_image(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to one rounding step: a batch of other sizes may round the last float bit
    differently (BLAS blocking), which can move a pixel across a level. Another seed's image
    differs by far more (hundreds of levels), so this still tells images apart."""
    return a.shape == b.shape and int(np.abs(a - b).max()) <= 2


def png_data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def scene(colour: str) -> Image.Image:
    image = Image.new("RGB", (64, 64), "white")
    image.paste(Image.new("RGB", (24, 24), colour), (8, 20))
    return image


def test_health_names_recipe_device_and_precision(client, pipeline):
    body = client.get("/api/health").json()
    assert body["api_version"] == 1
    assert body["recipe"] == "shapes" and body["recipes"] == ["shapes"]
    assert body["device"] == pipeline.settings.device and body["precision"] == pipeline.settings.precision
    assert body["image_size"] == 64 and body["steps"] == {"prior": 4, "decoder": 4}


def test_generate_draws_what_the_library_draws_and_the_png_reproduces(client, pipeline, tmp_path):
    body = client.post("/api/generate", json={"prompt": "a red circle", "n": 2, "seed": 11}).json()
    assert body["seeds"] == [11, 11] and len(body["images"]) == 2
    reference = as_uint8(pipeline.generate(["a red circle"], n=2, seed=11))
    served = [decode(url) for url in body["images"]]
    for index, (pixels, meta) in enumerate(served):
        assert same_image(pixels, reference[index])
        assert meta["command"] == "generate" and meta["prompt"] == "a red circle" and meta["seed"] == 11
        assert meta["n"] == 2 and meta["index"] == index and meta["overrides"] == FAST
    # the download is reproduced by the CLI
    from unclip_core.cli.main import main

    download = tmp_path / "served.png"
    download.write_bytes(base64.b64decode(body["images"][1].split(",", 1)[1]))
    assert main(["generate", "--from", str(download), "-o", str(tmp_path / "again.png"), "-q"]) == 0
    assert same_image(np.asarray(Image.open(tmp_path / "again.png").convert("RGB")).astype(int), served[1][0])


def test_jobs_report_progress_and_a_preview_of_the_decoders_x0(client):
    queued = client.post("/api/jobs/generate", json={"prompt": "a blue square", "seed": 2})
    assert queued.status_code == 202
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = client.get(f"/api/jobs/{queued.json()['job']}").json()
        if "result" in state or "error" in state:
            break
        time.sleep(0.05)
    assert state["state"] == "done", state.get("error")
    assert state["stage"] == "upsampler" and state["step"] == state["total"] == 4
    preview, _ = decode(state["preview"])  # the decoder's last x̂₀, at its 32-pixel size
    assert preview.shape == (32, 32, 3)
    assert client.get("/api/jobs/nope").status_code == 404


BOMB = Image.new("1", (9000, 9000))  # 81 megapixels, a few kB as a PNG


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/api/generate", "{not json", "the request body is not valid JSON"),
        ("/api/generate", "[1, 2]", "the request body must be a JSON object, got list"),
        ("/api/generate", {"prompt": ""}, "prompt 0 is empty; describe the image to generate"),
        ("/api/generate", {"prompt": "x", "n": 0}, "n must be at least 1, got 0"),
        ("/api/generate", {"prompt": "x", "n": 17}, "n must be at most 16, got 17"),
        ("/api/generate", {"prompt": "x", "seed": "one"}, "seed must be a whole number from 0 to 2**63-1"),
        ("/api/generate", {"prompt": "x", "seed": 2**64}, "seed must be a whole number from 0 to 2**63-1"),
        ("/api/generate", '{"prompt": "a red \\ud800 circle"}', "prompt holds bytes that are not UTF-8 text"),
        ("/api/generate", {"prompt": "x", "colour": 1}, "colour: unknown field; generate takes"),
        ("/api/generate", {"prompt": "x", "recipe": "karlo"}, "recipe 'karlo' is not served here; choose one of: shapes"),
        ("/api/generate", {"prompt": "x", "overrides": ["decoder.guidance_scal=2"]}, "decoder.guidance_scal"),
        ("/api/vary", {"image": "data:text/plain;base64," + base64.b64encode(b"hello").decode()},
         "image is not an image (no image format PIL knows)"),
        ("/api/vary", {"image": "%%%"}, "image is not base64 image data"),
        ("/api/vary", {"image": png_data_url(BOMB)}, "image is too large (9000×9000 pixels; the limit is 64 megapixels)"),
        ("/api/interpolate", {"image_a": png_data_url(scene("red")), "image_b": png_data_url(scene("blue")), "steps": 1},
         "steps must be at least 2, got 1"),
        ("/api/textdiff", {"image": png_data_url(scene("red")), "from_caption": " ", "to_caption": "a blue square"},
         "from_caption is empty"),
        ("/api/inpaint", {"image": png_data_url(scene("red")), "mask": png_data_url(Image.new("L", (64, 32))), "prompt": "x"},
         "mask"),
    ],
)
def test_bad_requests_get_a_400_with_one_line_and_the_server_keeps_serving(client, path, body, message):
    answer = client.post(path, content=body) if isinstance(body, str) else client.post(path, json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert message in error and "\n" not in error
    assert client.get("/api/health").status_code == 200


def test_a_body_over_the_limit_is_refused_with_a_413(client, monkeypatch):
    from unclip_core.serve import schemas

    monkeypatch.setattr(schemas, "MAX_BODY_BYTES", 1000)
    answer = client.post("/api/vary", json={"image": "A" * 2000})
    assert answer.status_code == 413 and answer.json()["error"] == "the request body is too large (over 1000 bytes)"
    assert client.post("/api/generate", json={"prompt": "a red circle"}).status_code == 200


def test_the_cli_gives_the_same_line_for_an_empty_prompt(capsys):
    from unclip_core.cli.main import main

    assert main(["generate", " ", "-q"]) == 2
    assert "prompt 0 is empty; describe the image to generate" in capsys.readouterr().err


def test_vary_interpolate_textdiff_and_inpaint_draw_what_the_library_draws(client, pipeline):
    red, blue = scene("red"), scene("blue")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 0, 64, 64))
    cases = [
        ("/api/vary", {"image": png_data_url(red), "n": 2, "seed": 3}, lambda: pipeline.variations(red, n=2, seed=3)),
        ("/api/interpolate", {"image_a": png_data_url(red), "image_b": png_data_url(blue), "steps": 3, "seed": 1},
         lambda: pipeline.interpolate(red, blue, steps=3, seed=1)),
        ("/api/textdiff", {"image": png_data_url(red), "from_caption": "a red square", "to_caption": "a blue square",
                           "thetas": [0.0, 0.5]}, lambda: pipeline.text_diff(red, "a red square", "a blue square", thetas=[0.0, 0.5])),
        ("/api/inpaint", {"image": png_data_url(red), "mask": png_data_url(mask), "prompt": "a green circle", "seed": 5},
         lambda: pipeline.inpaint(red, mask, "a green circle", seed=5)),
    ]
    for path, body, reference in cases:
        answer = client.post(path, json=body)
        assert answer.status_code == 200, answer.text
        served = [decode(url) for url in answer.json()["images"]]
        expected = as_uint8(reference())
        assert len(served) == len(expected)
        for (pixels, meta), wanted in zip(served, expected):
            assert same_image(pixels, wanted), path
            assert meta["command"] == path.rsplit("/", 1)[1] and meta["seed"] == body.get("seed", 0)
        if path in ("/api/interpolate", "/api/textdiff"):
            assert answer.json()["gif"].startswith("data:image/gif;base64,")


def test_concurrent_generate_requests_run_as_one_batch_each_getting_its_own_images(pipeline):
    from unclip_core.serve.batching import Job, Worker
    from unclip_core.serve.pipelines import PipelineCache
    from unclip_core.serve.schemas import GenerateRequest

    worker = Worker(PipelineCache(["shapes"], FAST), window_s=0.5)
    try:
        asks = [("a red circle", 1, 5), ("a blue square", 2, 7), ("a green triangle", 1, 9), ("a red circle", 1, 6)]
        jobs = [
            worker.submit(Job(GenerateRequest(prompt=p, n=n, seed=s), {}, worker.pipelines.key(None, [])))
            for p, n, s in asks
        ]
        results = [job.future.result(timeout=300) for job in jobs]
    finally:
        worker.stop()
    assert worker.batches == [4], "the four requests were not run as one batch"
    for (prompt, n, seed), result in zip(asks, results):
        alone = as_uint8(pipeline.generate_tensors([prompt], n=n, seed=seed))
        served = as_uint8(result.images)
        assert all(same_image(a, b) for a, b in zip(served, alone)) and len(served) == n
        assert result.metadata["seed"] == seed and result.metadata["prompt"] == prompt
    # same prompt, other seed: other images (the batch did not hand one request's rows to another)
    assert not same_image(as_uint8(results[0].images)[0], as_uint8(results[3].images)[0])


def test_row_generators_draw_each_requests_rows_from_its_own_seed():
    import torch

    from unclip_core.diffusion.row_generators import RowGenerators

    draw = RowGenerators([(5, 1), (7, 2)]).randn((6, 4))  # 2 rows per image, as the prior's candidates
    assert torch.equal(draw[:2], torch.randn((2, 4), generator=torch.Generator().manual_seed(5)))
    assert torch.equal(draw[2:], torch.randn((4, 4), generator=torch.Generator().manual_seed(7)))


def test_a_full_queue_is_a_503_with_a_message():
    from unclip_core.serve.app import create_app

    with TestClient(create_app(["shapes"], overrides=FAST, max_queue=1, window_s=2.0)) as busy:
        worker = busy.app.state.worker
        first = busy.post("/api/jobs/generate", json={"prompt": "a red circle"})
        while worker._queue:  # the worker has taken the first and waits for more to batch with
            time.sleep(0.01)
        assert busy.post("/api/jobs/generate", json={"prompt": "a blue square"}).status_code == 202
        full = busy.post("/api/generate", json={"prompt": "a green triangle"})
        assert full.status_code == 503 and "the server is busy (1 requests waiting)" in full.json()["error"]
        assert first.status_code == 202


def test_openapi_documents_every_operation(client):
    paths = client.get("/openapi.json").json()["paths"]
    for operation in ("generate", "vary", "interpolate", "textdiff", "inpaint"):
        schema = paths[f"/api/{operation}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert "seed" in schema["properties"]
    assert "/api/health" in paths


def test_the_page_offers_every_operation(client):
    page = client.get("/").text
    for operation in ("generate", "vary", "interpolate", "textdiff", "inpaint"):
        assert f'id="{operation}"' in page and f'data-tab="{operation}"' in page


def test_serve_command_is_listed_and_checks_its_options(capsys):
    from unclip_core.cli.main import main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "serve" in capsys.readouterr().out
    assert main(["serve", "--port", "0"]) == 2
    assert "--port must be between 1 and 65535, got 0" in capsys.readouterr().err


def test_a_port_in_use_is_one_line_before_any_loading(capsys):
    import socket

    from unclip_core.cli.main import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port), "-r", "no-such-recipe"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == f"unclip: error: cannot listen on 127.0.0.1:{port}: Address already in use (choose another --port or --host)"


def test_without_the_serve_extra_the_command_says_what_to_install(capsys, monkeypatch):
    import sys

    from unclip_core.cli.main import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if it were not installed
    assert main(["serve"]) == 2
    assert capsys.readouterr().err.strip() == (
        "unclip: error: unclip serve needs the 'serve' extra (uvicorn is missing): pip install 'unclip[serve]'"
    )


def test_the_serve_command_module_imports_no_web_framework():
    import subprocess
    import sys

    code = "import sys, unclip_core.cli.serve_cmd; print([m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def _curl_examples() -> list[tuple[str, list[str]]]:
    """Each ``$ curl ...`` in docs/serve.md's console blocks, with the output lines under it."""
    text = (ROOT / "docs" / "serve.md").read_text()
    examples: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                examples.append((line[2:], []))
            elif examples and line.strip():
                examples[-1][1].append(line.strip())
    return [example for example in examples if example[0].startswith("curl ")]


def test_docs_curl_examples_run_against_the_app(client):
    examples = _curl_examples()
    assert len(examples) >= 3
    for command, expected in examples:
        words = shlex.split(command)
        url = next(word for word in words if word.startswith("http://127.0.0.1:7860/"))
        data = words[words.index("-d") + 1] if "-d" in words else None
        answer = client.post(url[len("http://127.0.0.1:7860"):], content=data, headers={"Content-Type": "application/json"}) \
            if data is not None else client.get(url[len("http://127.0.0.1:7860"):])
        for line in expected:
            pattern = ".*".join(re.escape(part) for part in line.split("..."))
            assert re.search(pattern, answer.text), f"{command!r} answered {answer.text[:300]!r}, not {line!r}"


def test_the_docs_state_the_servers_limits():
    from unclip_core.serve import schemas

    body = f"{schemas.MAX_BODY_BYTES:,}"
    for page in ("serve.md", "recipes.md"):
        text = (ROOT / "docs" / page).read_text()
        assert body in text and f"{schemas.MAX_UPLOAD_BYTES // 2**20} MiB" in text, page
    assert f"at most {schemas.MAX_IMAGES} images" in (ROOT / "docs" / "recipes.md").read_text()
