"""Shared fixtures: the notebook's own code imported in-process, its default parameters, image folders
made on the fly, a papermill runner for end-to-end runs on tiny data, and the end-to-end runs that several
test files read (one run serves many tests: each papermill run costs seconds of kernel start-up)."""

import atexit
import json
import os
import shutil
import sys
import tempfile
import types
from contextlib import contextmanager
from pathlib import Path

import notebook_module
import numpy as np
import pytest
import torch
from notebook_module import load_notebook
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

# One thread in this process and in every kernel the tests start (OMP_NUM_THREADS, inherited), unless it is
# set. The networks here are tiny: a second thread buys little, and a thread count fixed whatever the
# machine's cores takes one cause of different float sums (and so of different training runs) away. On a
# shared 2-core machine two OpenMP threads per process also spin against the other processes: 2 epochs of
# the report run's 32 tiny steps took 1.0 s with one thread and 107-133 s with two while another job ran.
TEST_THREADS = int(os.environ.setdefault("OMP_NUM_THREADS", "1"))
torch.set_num_threads(TEST_THREADS)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "anime_gan.ipynb"
SHARED = ROOT.parent / "shared"
SHARED_FACES = SHARED / "data" / "anime-faces" / "images"
SHARED_FID_WEIGHTS = (
    SHARED / "models" / "fid-inception" / "weights-inception-2015-12-05-fidhelper-converted.pth"
)
# On CI (CI=true, as GitHub Actions and most services set it) ../shared must be there: a test that needs it
# fails instead of skipping, so a missing folder can never turn into a quietly shorter suite. (.ci/run reads
# CI the same way, and stops before installing anything.)
NOT_CI = ("", "0", "false", "no")


def running_on_ci():
    """True when the CI variable says so (any value but empty, 0, false or no, in any case)."""
    return os.environ.get("CI", "").strip().lower() not in NOT_CI


def needs_shared(path):
    """Skip unless path (a file or folder in ../shared) is present; on CI, fail instead."""
    if not Path(path).exists():
        reason = f"{path} is absent (../shared lives beside the project only on developer and CI machines)"
        if running_on_ci():
            pytest.fail(f"{reason}; on CI (CI={os.environ['CI']}) it must be there.", pytrace=False)
        pytest.skip(reason)


# Tiny settings: every end-to-end run finishes in seconds on 2 CPU cores.
TINY = dict(
    IMAGE_SIZE=32,
    G_WIDTH=8,
    D_WIDTH=8,
    LATENT_DIM=16,
    BATCH_SIZE=16,
    EPOCHS=2,
    LOG_EVERY=2,
    SAMPLE_COUNT=16,
    GENERATE_COUNT=16,
    FID_SAMPLES=0,
    FID_REAL=32,
    DEVICE="cpu",
    PRECISION="fp32",  # not "auto": that trains in bf16 on some CPUs and fp32 on others
    PLAY_GAME_2D=False,  # 5-6 s a run; the report run plays it, test_6_game_2d.py checks that it learns
)


@pytest.fixture(scope="session")
def nb():
    """The notebook's imports, functions, classes and constants (no cell is run: see notebook_module.py)."""
    return load_notebook(NOTEBOOK)


def notebook_json():
    """The committed notebook as JSON."""
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def default_parameters():
    """Every knob's default (the Advanced settings form and the `parameters` form), as {"EPOCHS": 25, ...}."""
    return notebook_module.default_parameters(NOTEBOOK)


@pytest.fixture
def make_config(nb, default_parameters, tmp_path):
    """make_config(**overrides) -> the notebook's Config for the defaults, TINY and the overrides."""

    def build(**overrides):
        values = {**default_parameters, **TINY, "RUN_DIR": str(tmp_path / "run"), **overrides}
        return nb.make_config(values)

    return build


def write_faces(folder, count, size=40, seed=0, fmt="png"):
    """Write `count` random but structured RGB images (a bright disc on a coloured background)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    paths = []
    for index in range(count):
        background = rng.integers(0, 256, 3)
        pixels = np.broadcast_to(background, (size, size, 3)).copy()
        cy, cx, radius = rng.integers(size // 4, 3 * size // 4, 2).tolist() + [
            int(rng.integers(size // 8, size // 3))
        ]
        pixels[(yy - cy) ** 2 + (xx - cx) ** 2 < radius**2] = rng.integers(0, 256, 3)
        pixels = np.clip(pixels + rng.integers(-12, 13, pixels.shape), 0, 255).astype(np.uint8)
        path = folder / f"face_{index:04d}.{fmt}"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def faces_dir(tmp_path):
    """A folder of 64 small synthetic face-like images."""
    write_faces(tmp_path / "faces", 64)
    return tmp_path / "faces"


@pytest.fixture(autouse=True)
def close_figures():
    """After each test, close every matplotlib figure it left open (the notebook's neighbours_figure returns one
    for its caller to show), so that a later test in the same process starts with none: the LiveView test
    counts the figures left open. Without this the suite's result would depend on which tests one process
    ran before which."""
    yield
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")


# Every end-to-end run starts the same kernel, whatever is installed or registered on the machine:
#  - "python3" is this interpreter (a kernelspec registered elsewhere, e.g. by another Python's
#    `ipykernel install --user`, could otherwise run the notebook under other packages), and
#  - ipywidgets is hidden from it, so tqdm draws text bars and the notebook reports headless
#    (LIVE_FRONT_END False), as on CI; the live path is tested in-process (test_notebook_layout.py).
KERNEL_SPEC = {
    "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
    "display_name": "Python 3 (the tests' interpreter)",
    "language": "python",
}
WIDGET_BLOCKER = 'raise ImportError("ipywidgets is hidden from the tests\' kernel (tests/conftest.py)")\n'


def kernel_support_folder():
    """A folder (made once per session) holding the pinned kernelspec and the ipywidgets blocker."""
    if not getattr(kernel_support_folder, "path", None):
        folder = Path(tempfile.mkdtemp(prefix="anime_gan_kernel_"))
        atexit.register(shutil.rmtree, folder, True)
        (folder / "jupyter" / "kernels" / "python3").mkdir(parents=True)
        (folder / "jupyter" / "kernels" / "python3" / "kernel.json").write_text(json.dumps(KERNEL_SPEC))
        (folder / "hide" / "ipywidgets").mkdir(parents=True)
        (folder / "hide" / "ipywidgets" / "__init__.py").write_text(WIDGET_BLOCKER)
        kernel_support_folder.path = folder
    return kernel_support_folder.path


@contextmanager
def kernel_environment():
    """Inside: JUPYTER_PATH finds the pinned kernelspec first, and PYTHONPATH starts with the ipywidgets
    blocker (other entries, such as a test's stand-in packages, stay). Restored afterwards."""
    folder = kernel_support_folder()
    saved = {name: os.environ.get(name) for name in ("JUPYTER_PATH", "PYTHONPATH")}
    for name, first in (("JUPYTER_PATH", folder / "jupyter"), ("PYTHONPATH", folder / "hide")):
        os.environ[name] = os.pathsep.join(p for p in (str(first), saved[name]) if p)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_notebook(output_dir, **parameters):
    """Execute the notebook with papermill and the TINY settings plus `parameters`; returns the output path.
    Raises papermill's PapermillExecutionError (its message holds the notebook's error) on failure."""
    import papermill

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    output = output_dir / f"executed_{len(list(output_dir.glob('executed_*.ipynb')))}.ipynb"
    with kernel_environment():
        papermill.execute_notebook(
            str(NOTEBOOK),
            str(output),
            parameters={**TINY, **parameters},
            kernel_name="python3",
            progress_bar=False,
            cwd=str(output_dir),
            execution_timeout=600,
            # The executed notebook is written once, when the run ends or a cell fails (3 s less a run than
            # after every cell); a kernel that dies or times out leaves none, and no test reads one then.
            request_save_on_cell_execute=False,
        )
    return output


def notebook_text(path):
    """All text outputs (streams, errors, plain-text results) of an executed notebook, joined."""
    texts = []
    for cell in json.loads(Path(path).read_text(encoding="utf-8"))["cells"]:
        for output in cell.get("outputs", []):
            if output["output_type"] == "stream":
                texts.append("".join(output["text"]))
            elif output["output_type"] == "error":
                texts.append(f"{output['ename']}: {output['evalue']}")
            else:
                texts.append("".join(output.get("data", {}).get("text/plain", "")))
    return "\n".join(texts)


# ---------------------------------------------------------------------------------------------------------
# End-to-end runs shared by several test files (session-scoped: each runs once, whoever asks first)


def make_messy_folder(folder):
    """Mixed sizes, modes and formats, a nested folder, an upper-case extension, one corrupt JPEG, and hidden
    files and folders (a thumbnail cache, macOS's "._" companions) that must not be read: 66 image files."""
    write_faces(folder, 40, size=40, fmt="png")
    write_faces(folder / "nested" / "deeper", 12, size=70, seed=1, fmt="jpg")
    for index, path in enumerate(write_faces(folder / "modes", 12, size=36, seed=2)):
        image = Image.open(path)
        [image.convert("L"), image.convert("P"), image.convert("RGBA")][index % 3].save(path)
    Image.open(path).convert("RGB").save(folder / "SHOUTING.JPG")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    write_faces(folder / ".thumbnails", 3, seed=4)  # hidden folder: its images are not counted
    (folder / "._face_0000.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # hidden file, not an image
    write_faces(folder / "nested", 1, seed=5)[0].rename(folder / "nested" / ".hidden.png")


FAKE_USER, FAKE_KEY = "fakeuser_Zq7Wm4Kx", "fakekey_c0ffee5ecret9b1e77d4a0"
FAKE_KAGGLEHUB = """
import os
from pathlib import Path


def dataset_download(handle, *args, **kwargs):
    \"\"\"Stand-in for kagglehub: record the request, return the prepared folder. No network.\"\"\"
    Path(os.environ["FAKE_KAGGLE_LOG"]).write_text(handle)
    return os.environ["FAKE_KAGGLE_FOLDER"]
"""
# Every download goes to a closed local port; the proxies' variables in lower and upper case.
OFFLINE_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture(scope="session")
def report_run(tmp_path_factory):
    """One headless papermill run read by test_3_data_inputs.py (the messy folder, the 2-D game, credentials),
    test_notebook_layout.py (a short report), test_7_results.py (GIF), test_8_generate_and_share.py (latent
    walk, nearest neighbours, Hub folder, zip) and test_9_evaluate.py (FID without weights offline): the 2-D
    game, then 4 epochs of BATCH_SIZE 2 on the messy folder, which DATA_DIR "" fetches through a stand-in
    kagglehub while KAGGLE_USERNAME / KAGGLE_KEY are set; FID is asked for (10 vs 10) without FID_WEIGHTS and
    without internet, and torch's download cache is an empty folder."""
    folder = tmp_path_factory.mktemp("report")
    make_messy_folder(folder / "images")
    fake = folder / "fake_packages" / "kagglehub"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(FAKE_KAGGLEHUB)
    with pytest.MonkeyPatch.context() as patch:  # the papermill kernel inherits this environment
        patch.setenv("PYTHONPATH", os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")]))
        patch.setenv("FAKE_KAGGLE_LOG", str(folder / "download.log"))
        patch.setenv("FAKE_KAGGLE_FOLDER", str(folder / "images"))
        patch.setenv("KAGGLE_USERNAME", FAKE_USER)
        patch.setenv("KAGGLE_KEY", FAKE_KEY)
        for name in OFFLINE_PROXIES:
            patch.setenv(name, "http://127.0.0.1:9")
        for name in ("NO_PROXY", "no_proxy"):
            patch.delenv(name, raising=False)
        patch.setenv("TORCH_HOME", str(folder / "torch_home"))
        out = run_notebook(
            folder / "out",
            DATA_DIR="",
            RUN_DIR=str(folder / "run"),
            EPOCHS=4,
            BATCH_SIZE=2,
            FID_SAMPLES=10,
            FID_REAL=10,
            PLAY_GAME_2D=True,
        )
    return types.SimpleNamespace(
        folder=folder, images=folder / "images", run=folder / "run", out=out, text=notebook_text(out)
    )


@pytest.fixture(scope="module")
def e2e_run(report_run):
    """The shared 4-epoch report run (conftest.report_run): (run folder, executed notebook)."""
    return report_run.run, report_run.out


# A stand-in for torch-fidelity, so the FID plumbing runs end to end without ../shared's Inception weights:
# its "FID" is the mean absolute difference of the two sets' mean images (a deterministic function of the
# images, so a resumed run and a straight one must agree on it), and every call is logged.
FAKE_TORCH_FIDELITY = """
import json
import os

import numpy as np


def calculate_metrics(input1, input2, **options):
    \"\"\"Stand-in for torch_fidelity.calculate_metrics: a deterministic score, each call logged.\"\"\"
    fakes, real = (np.stack([np.asarray(item) for item in data]).astype(np.float64) for data in (input1, input2))
    with open(os.environ["FAKE_FIDELITY_LOG"], "a") as log:
        log.write(json.dumps({"fakes": list(fakes.shape), "real": list(real.shape)}) + "\\n")
    distance = float(np.abs(fakes.mean(0) - real.mean(0)).mean())
    return {
        "frechet_inception_distance": distance,
        "kernel_inception_distance_mean": distance / 1000,
        "kernel_inception_distance_std": 0.0,
    }
"""
FAKE_FID = dict(FID_SAMPLES=10, FID_REAL=10, FID_EVERY=1)


@pytest.fixture(scope="session")
def resume_chain(tmp_path_factory):
    """Five papermill runs on 64 synthetic faces, all with one CACHE_DIR: "first" (EPOCHS 1, decodes),
    "resumed" (EPOCHS 2 in the same RUN_DIR), "straight" (EPOCHS 2 in a new RUN_DIR), then the resumed run
    again in bf16 (EPOCHS 3) and back in fp32 (EPOCHS 4). FID every epoch and at the end, from the stand-in
    torch-fidelity (FAKE_TORCH_FIDELITY). The resumed run's folder is copied after each step
    (`after["first"]`, `after["resumed"]`, ...); so are the cache file's identity and the FID calls."""
    folder = tmp_path_factory.mktemp("chain")
    write_faces(folder / "faces", 64)
    cache = folder / "cache"
    fake = folder / "fake_packages" / "torch_fidelity"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(FAKE_TORCH_FIDELITY)
    log = folder / "fid_calls.jsonl"
    steps = [
        ("first", "resumed", dict(EPOCHS=1)),
        ("resumed", "resumed", dict(EPOCHS=2)),
        ("straight", "straight", dict(EPOCHS=2)),
        ("bf16", "resumed", dict(EPOCHS=3, PRECISION="bf16")),
        ("fp32", "resumed", dict(EPOCHS=4, PRECISION="fp32")),
    ]
    texts, after, cache_files, fid_calls = {}, {}, {}, {}
    for name, run_dir, parameters in steps:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PYTHONPATH", os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")]))
            patch.setenv("FAKE_FIDELITY_LOG", str(log))
            out = run_notebook(
                folder / "out",
                DATA_DIR=str(folder / "faces"),
                RUN_DIR=str(folder / run_dir),
                CACHE_DIR=str(cache),
                **FAKE_FID,
                **parameters,
            )
        texts[name] = notebook_text(out)
        fid_calls[name] = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        after[name] = shutil.copytree(folder / run_dir, folder / "after" / name)
        cache_files[name] = {
            path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in cache.glob("faces_*")
        }
    return types.SimpleNamespace(
        folder=folder,
        cache=cache,
        texts=texts,
        after=after,
        cache_files=cache_files,
        fid_calls=fid_calls,
        final=folder / "resumed",
    )


def tiny_config(nb, default_parameters, run_dir, **overrides):
    """The notebook's Config for its defaults, the TINY settings, run_dir and overrides."""
    return nb.make_config({**default_parameters, **TINY, "RUN_DIR": str(run_dir), **overrides})


def cpu_hardware(nb, precision="fp32"):
    """The notebook's Compute on the CPU, as its own rule chooses it (channels-last in every precision)."""
    return nb.choose_compute(torch.device("cpu"), precision)


def train_epochs(nb, gan, images, metrics, fixed_noise, config, compute, paths, fid_probe=None, view=None):
    """What the notebook's training cell does: the batches, the keeper, the loop (images: the placed tensor)."""
    batches = nb.Batches(images, config.batch_size, config.random_flip, config.seed, compute)
    keeper = nb.RunKeeper(gan, metrics, fixed_noise, config, compute, paths, images, fid_probe, view)
    nb.train(gan, batches, fixed_noise, compute, keeper)
    return keeper


def one_epoch(nb, gan, images, epoch, config, compute, after_step=None):
    """The notebook's train_one_epoch for `epoch` over images (the placed tensor); the history on the CPU."""
    batches = nb.Batches(images, config.batch_size, config.random_flip, config.seed, compute)
    return nb.train_one_epoch(gan, batches.epoch(epoch), compute, after_step).cpu()


def train_run(nb, config, hardware, images, init_seed=0):
    """What the notebook's cells do: run folder, fresh Gan, start_or_resume, train. Returns (gan, metrics, paths).
    A non-zero init_seed scrambles the fresh networks' weights (a resumed run must not depend on them)."""
    paths = nb.make_run_folder(config.run_dir)
    gan = nb.build_gan(config, hardware)
    if init_seed:
        torch.manual_seed(init_seed)
        with torch.no_grad():
            for parameter in [*gan.generator.parameters(), *gan.discriminator.parameters()]:
                parameter.normal_(0.0, 0.02)
    _, metrics, fixed_noise = nb.start_or_resume(gan, paths, config, hardware)
    train_epochs(nb, gan, images, metrics, fixed_noise, config, hardware, paths)
    return gan, metrics, paths


@pytest.fixture(scope="session")
def tiny_images(nb, tmp_path_factory):
    """64 decoded 32 px faces as the uint8 tensor training reads (4 steps of 16 per epoch)."""
    folder = tmp_path_factory.mktemp("tiny_faces")
    write_faces(folder / "images", 64, size=40)
    faces = nb.prepare_dataset(folder / "images", 32, 0, 0, folder / "cache")
    assert faces.images.shape == (64, 32, 32, 3)
    return nb.place_images(faces.images, torch.device("cpu"))


def assert_identical(actual, expected, where="state"):
    """Recursive equality; tensors must match bit for bit (same dtype, shape and values)."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor), where
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, where
        assert torch.equal(actual, expected), f"{where} differs"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), where
        for key in expected:
            assert_identical(actual[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for index, (a, e) in enumerate(zip(actual, expected)):
            assert_identical(a, e, f"{where}[{index}]")
    else:
        assert actual == expected, where


# ---------------------------------------------------------------------------------------------------------
# Helpers and fixtures that tests of several files share (each moved here with its tests, unchanged)

CPU = torch.device("cpu")


def code_cells():
    return [c for c in notebook_json()["cells"] if c["cell_type"] == "code"]


def files_below(folder):
    """Every file below folder, hidden ones included, relative and sorted."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


def state_equal(a, b):
    """True when two state dicts have the same keys and bit-identical tensors."""
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


CPU_FP32 = dict(device=torch.device("cpu"), precision="fp32", channels_last=False)


def tiny_gan(nb, make_config, faces_dir, hardware=None, **overrides):
    """A tiny GAN (fp32 on the CPU unless hardware says otherwise) trained for one epoch of 4 steps on
    faces_dir. Returns (gan, config, hardware)."""
    config = make_config(DATA_DIR=str(faces_dir), **overrides)
    hardware = hardware or nb.Compute(**CPU_FP32)
    torch.manual_seed(0)
    gan = nb.build_gan(config, hardware)
    images = torch.from_numpy(
        np.stack([nb.load_image(path, config.image_size)[0] for path in sorted(faces_dir.iterdir())])
    )
    one_epoch(nb, gan, images, 1, config, hardware)
    return gan, config, hardware


def run(nb, default_parameters, images, run_dir, **overrides):
    config = tiny_config(nb, default_parameters, run_dir, PRECISION="fp32", **overrides)
    hardware = nb.choose_compute(CPU, "fp32")
    paths = nb.make_run_folder(config.run_dir)
    gan = nb.build_gan(config, hardware)
    _, metrics, fixed_noise = nb.start_or_resume(gan, paths, config, nb.choose_compute(CPU, "fp32"))
    train_epochs(nb, gan, images, metrics, fixed_noise, config, hardware, paths)
    return gan, metrics, paths


class HostReads(TorchDispatchMode):
    """Counts the operations that read a tensor's value back to Python (.item(), bool(), int()): on a GPU each
    one makes the CPU wait for the GPU."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def per_step_host_reads(nb, monkeypatch, config, hardware, images, fused):
    """Host reads inside the per-step work (batch, train_step, EMA update) over one epoch, with Adam fused as on
    CUDA (fused=True) or the plain kernel."""
    gan = nb.build_gan(config, hardware)
    adam = dict(lr=config.lr, betas=(config.beta1, 0.999), fused=fused)
    gan.opt_g = torch.optim.Adam(gan.generator.parameters(), **adam)
    gan.opt_d = torch.optim.Adam(gan.discriminator.parameters(), **adam)
    counter = HostReads()

    def counted(function):
        def run(*args, **kwargs):
            with counter:
                return function(*args, **kwargs)

        return run

    for name in ("real_batch", "train_step", "update_ema"):
        monkeypatch.setattr(nb, name, counted(getattr(nb, name)))
    one_epoch(nb, gan, images, 1, config, hardware)
    monkeypatch.undo()
    return counter.count


@pytest.fixture
def decoded(nb, tmp_path):
    """32 px images decoded into the notebook's cache, and the same array placed for training."""
    write_faces(tmp_path / "faces", 40, size=48)
    faces = nb.prepare_dataset(tmp_path / "faces", 32, 0, 0, tmp_path)
    return faces, nb.place_images(faces.images, torch.device("cpu"))


# The suite runs in two processes (`pytest -n 2`, pytest-xdist, as the README says), with the slow shared
# work kept whole: every test that reads one of these fixtures runs in the process that made it (made once,
# not once per process), and the other tests go by file. Listed slowest first (pytest --durations on the
# 2-core CPU), and the suite is ordered so, because xdist hands out whole groups in that order (a process
# gets its next group as it nears the end of its last): the long runs start at once, the short files fill in.
SLOW_SHARED_WORK = ("resume_chain", "smoke", "fid_run", "learned", "fid_scores", "report_run")


def group_of(item):
    """The name of the slow shared fixture item reads (the first listed), else its file."""
    return next((name for name in SLOW_SHARED_WORK if name in item.fixturenames), item.path.name)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which turns -n alone into --dist load
def pytest_cmdline_main(config):
    """With -n and no --dist: each group whole in one process (loadgroup), the groups in this file's order
    (not xdist's largest-first). Plain pytest, with or without pytest-xdist installed, is left as it is."""
    if config.pluginmanager.hasplugin("xdist") and config.option.numprocesses and config.option.dist == "no":
        config.option.dist, config.option.loadscopereorder = "loadgroup", False


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: called only where it is installed
def pytest_configure_node(node):
    """Before xdist starts a test process: tell it whether to group (it reads only the command line)."""
    node.workerinput["group_tests"] = node.config.option.dist == "loadgroup"


def pytest_configure(config):
    """In a test process that xdist started to group the tests: group them (see pytest_cmdline_main)."""
    if getattr(config, "workerinput", {}).get("group_tests"):
        config.option.loadgroup = True


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the groups into the test ids
def pytest_collection_modifyitems(config, items):
    """Group the tests (see SLOW_SHARED_WORK) and put the slow groups first; the rest keep their order."""
    rank = {name: index for index, name in enumerate(SLOW_SHARED_WORK)}
    items.sort(key=lambda item: rank.get(group_of(item), len(rank)))  # a stable sort
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group_of(item)))


def pytest_addoption(parser):
    parser.addoption(
        "--device",
        default="cpu",
        help="where tests marked `device` run: cpu (default), cuda, cuda:1 or mps (python -m pytest -m device --device cuda)",
    )


@pytest.fixture(scope="session")
def test_device(request):
    """The torch.device that tests marked `device` run on (--device)."""
    return torch.device(request.config.getoption("--device"))
