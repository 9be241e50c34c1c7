"""Typed configuration: dataclasses loaded from YAML, strictly.

Every number the training uses lives here with a comment saying where it comes from. The loader rejects unknown
keys (with a "did you mean"), wrong types and impossible values before any work starts.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mgsrgan.errors import UserError
from mgsrgan.io.photo_degradation import OrderRanges, range_problems, second_order_defaults


class ConfigError(UserError):
    """A mistake in a config file or override; the message names the file and the dotted key."""


@dataclass
class ModelConfig:
    scale: int = 4  # upscaling factor; SRResNet uses one PixelShuffle x2 stage per factor of 2 (Ledig et al. 2017)
    num_blocks: int = 16  # residual blocks B = 16 (Ledig et al. 2017, sec. 3.2)
    channels: int = 64  # feature maps per conv, 64 (Ledig et al. 2017, fig. 4)
    d_channels: int = 64  # discriminator's first conv width; doubles to 8x = 512 (Ledig et al. 2017, fig. 4)
    d_dense: int = 1024  # discriminator's dense layer width (Ledig et al. 2017, fig. 4)
    d_pool: int = 6  # discriminator map pooled to d_pool^2 before the dense layer: 96 px / 16 = 6 (Ledig et al.)
    leaky_slope: float = 0.2  # discriminator LeakyReLU alpha = 0.2 (Ledig et al. 2017, sec. 2.2)
    # none: the paper's SRResNet; bicubic: predict the residual over a bicubic upscale (VDSR, Kim et al. 2016)
    global_skip: Literal["none", "bicubic"] = "none"
    # Spectral normalisation of every discriminator conv and dense layer, BatchNorm dropped (Miyato et al. 2018;
    # Real-ESRGAN's discriminator): bounds D's Lipschitz constant, so its gradients to G stay tame. Off = paper.
    d_spectral_norm: bool = False


@dataclass
class DegradationConfig:
    """How training and validation LR is made from HR. "bicubic": the benchmark protocol's downscale. "photo": the
    real-photo model (blur, resize, noise, JPEG, twice: mgsrgan/io/photo_degradation.py) for the real-world models."""
    kind: Literal["bicubic", "photo"] = "bicubic"  # photo: each order's draws below (Real-ESRGAN's ranges)
    second_order_prob: float = 0.8  # chance of the second order (Real-ESRGAN); else the first ends at the LR size
    first: OrderRanges = field(default_factory=OrderRanges)
    second: OrderRanges = field(default_factory=second_order_defaults)


@dataclass
class DataConfig:
    train_dirs: list[str] = field(default_factory=list)  # folders of HR images (searched recursively)
    train_lr_dirs: list[str] = field(default_factory=list)  # optional paired LR folders, matched to train_dirs by stem
    val_dir: str = ""  # folder of HR images for validation; empty disables validation
    val_max_images: int = 0  # 0 = all; a cap keeps validation cheap on CPU
    # N > 0 (with val_dir empty): the last N images, by name, of the last train_dirs folder are kept out of training
    # and validate instead, so model selection never sees a test set (Set5/Set14/BSD100 stay test-only)
    val_holdout: int = 0
    hr_patch: int = 96  # HR crop side in pixels, 96 (Ledig et al. 2017, sec. 3.2)
    batch_size: int = 16  # 16 (Ledig et al. 2017, sec. 3.2)
    num_workers: int = 2  # DataLoader worker processes; 0 loads in the training process
    augment: bool = True  # random flips and 90-degree rotations (standard since EDSR, Lim et al. 2017)
    cache_images: bool = True  # keep decoded images in memory (T91 + BSD200 is ~100 MB as uint8)
    degradation: DegradationConfig = field(default_factory=DegradationConfig)


@dataclass
class LossConfig:
    pixel: Literal["mse", "l1"] = "mse"  # SRResNet pre-training loss: MSE (Ledig et al. 2017, eq. 4)
    content_layer: str = "5_4"  # VGG19 phi_{i,j}: "5_4" = VGG54, "2_2" = VGG22 (Ledig et al. 2017, sec. 2.2.1)
    content_before_relu: bool = False  # paper: feature map after activation; ESRGAN (Wang et al. 2018) uses before
    content_rescale: float = 1.0 / 12.75  # VGG features scaled by 1/12.75 (Ledig et al. 2017, sec. 3.2)
    content_weight: float = 1.0  # l_X weight in the perceptual loss (Ledig et al. 2017, eq. 3)
    adv_weight: float = 1e-3  # 10^-3 * l_Gen (Ledig et al. 2017, eq. 3)
    pixel_weight_gan: float = 0.0  # optional pixel term in the GAN phase; 0 = the paper's SRGAN-VGG54
    # Multi-layer perceptual loss (ESRGAN/Real-ESRGAN weight several VGG layers): these layers, each weighted by
    # content_layer_weights, replace content_layer; empty = content_layer alone (the paper). Weights 0 = no trunk.
    content_layers: list[str] = field(default_factory=list)
    content_layer_weights: list[float] = field(default_factory=list)
    # Weight of a penalty on the output's pattern locked to the sub-pixel grid (losses.grid_pattern_loss: SR's vs
    # HR's mean high-pass luma per (row mod s, column mod s) phase), the checkerboard a PixelShuffle GAN drifts
    # into (Odena et al. 2016 trace it to the upsampling); 0 = off (the paper). Not in SRGAN: measured here.
    grid_weight: float = 0.0
    # standard: D(x) = sigmoid(C(x)), eq. 2 and 6 of the paper; relativistic: relativistic average GAN, real vs
    # the batch's mean fake and back (Jolicoeur-Martineau 2018; ESRGAN, Wang et al. 2018, eq. 1-2)
    adversarial: Literal["standard", "relativistic"] = "standard"
    # imagenet: torchvision's VGG19 file (the paper); stlpips: the VGG16 trunk of ST-LPIPS (offline, trained for
    # perceptual similarity, not ImageNet; layers 1_1..5_3); random: for tests only
    vgg_weights: Literal["imagenet", "stlpips", "random"] = "imagenet"
    vgg_path: str = ""  # vgg19-dcbb9e9d.pth (imagenet) or vgg_shift_tolerant.pth (stlpips); empty = hub cache


@dataclass
class TrainConfig:
    members: int = 3  # K generators, each with its own seed, discriminator and optimizers
    seed: int = 0  # member k uses seed + k
    schedule: Literal["sequential", "lockstep"] = "sequential"  # members one after another, or all in one loop
    # What each member trains on. independent: its own patch stream (own crops, order, augmentation; the seed of
    # member k is seed + k), lockstep included; shared: one stream for all (lockstep then shares the content net's
    # HR pass); bootstrap: own stream over its own bootstrap resample of the images (bagging, Breiman 1996)
    member_data: Literal["independent", "shared", "bootstrap"] = "independent"
    pretrain_steps: int = 1_000_000  # SRResNet MSE steps: 10^6 (Ledig et al. 2017, sec. 3.2)
    # Adversarial iterations; one iteration is one cycle of the n:m plan: d_updates discriminator steps, then
    # g_updates generator steps (Goodfellow et al. 2014, Alg. 1), each step on its own batch. The paper's 10^5 at
    # 1e-4 then 10^5 at 1e-5 (Ledig et al. 2017, sec. 3.2): 2 x 10^5 generator updates at 1:1.
    gan_iterations: int = 200_000
    g_learning_rate: float = 1e-4  # generator Adam lr in pre-training: 10^-4 (Ledig et al. 2017, sec. 3.2)
    # constant: the paper; cosine: decay to 0 over pre-training (Loshchilov and Hutter 2017), for short runs
    pretrain_lr_schedule: Literal["constant", "cosine"] = "constant"
    gan_g_learning_rate: float = 1e-4  # generator Adam lr in the adversarial phase: 10^-4 (Ledig et al. 2017)
    d_learning_rate: float = 1e-4  # same as the generator in the paper
    adam_beta1: float = 0.9  # Adam beta1 = 0.9 (Ledig et al. 2017, sec. 3.2)
    adam_beta2: float = 0.999  # PyTorch/Adam paper default (Kingma and Ba 2015)
    gan_lr_decay_iteration: int = 100_000  # lr x gan_lr_decay from this adversarial iteration on (Ledig et al.)
    gan_lr_decay: float = 0.1  # 1e-4 -> 1e-5 (Ledig et al. 2017, sec. 3.2)
    # Exponential moving average of the generator's weights in the GAN phase, saved as the `gan` checkpoint (BasicSR and
    # Real-ESRGAN use 0.999 over 4e5 iterations); 0 = off (the paper). Its horizon, 1/(1 - decay) updates, should
    # be a fraction of the phase's generator updates.
    ema_decay: float = 0.0
    # The GAN phase runs the generator's BatchNorm in eval mode on the pixel-loss statistics: D batches then cannot move
    # the running statistics that inference folds into the weights, and train and inference compute the same
    # function (ESRGAN drops BN for its train/test mismatch, Wang et al. 2018, sec. 3.1). False = the paper.
    gan_freeze_bn: bool = False
    # Which adversarial weights become the `gan` checkpoint. last: the phase's end (the paper). stlpips_alex: of the
    # phase's validations (every val_every steps and the end), the one with the lowest held-out ST-LPIPS-Alex that
    # passes the guards below. Why: a GAN's perceptual quality does not improve monotonically with its steps, so a
    # short adversarial phase's last weights need not be its best. Picked on held-out images, never a test set.
    gan_select: Literal["last", "stlpips_alex"] = "last"
    gan_select_max_psnr_drop: float = 0.3  # dB a candidate may lose against the member's pixel-loss validation PSNR
    # candidate's periodic-artifact amplitude / the HR's: at most twice the pattern the image itself has
    gan_select_max_artifact: float = 2.0
    # largest |mean SR - HR| per RGB channel, 8-bit levels: the lowest ST-LPIPS-Alex can come with a colour cast,
    # which the perceptual distance barely sees
    gan_select_max_shift: float = 1.0
    # A run (or weights/x2) folder whose member_<k>/pretrain.safetensors starts member k's generator wherever names
    # and shapes match: at another scale head, residual blocks and body tail, the upsampler and tail keeping their
    # fresh init (x4 from a trained x2 body converges faster: EDSR, Lim et al. 2017, sec. 4.2); at the same scale
    # the whole generator, so the pixel-loss phase continues from it (a warm restart: SGDR, Loshchilov and Hutter
    # 2017).
    # "" = random init (the paper).
    init_from: str = ""
    g_updates: int = 1  # n: generator updates per cycle of the n:m plan (1:1 in the paper)
    d_updates: int = 1  # m: discriminator updates per cycle, made first (k = 1 in Goodfellow et al. 2014, Alg. 1)
    val_every: int = 1000  # validation interval in steps; 0 = only at the end of each phase
    checkpoint_every: int = 1000  # "last" checkpoint interval in steps
    log_every: int = 50  # log line / JSONL interval in steps
    out_dir: str = "runs"  # parent folder of run folders
    name: str = ""  # run folder name; empty = config file stem + timestamp


@dataclass
class RuntimeConfig:
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = CUDA when available; the CLI's --device overrides it
    # autocast dtype, CPU included. auto: bf16 on CUDA cards and CPUs with native bf16 (AVX512-BF16/AMX: faster
    # convolutions than fp32), fp16 on older CUDA cards, else none (fp32). Weights and optimizers stay fp32.
    amp: Literal["auto", "none", "bf16", "fp16"] = "auto"
    channels_last: bool = True  # NHWC networks and batches in training, CUDA and CPU (faster convolutions on both)
    threads: int = 0  # torch CPU threads; 0 = torch's default
    # torch.compile the networks' gradient steps: fewer passes over memory between the convolutions (tools/speed.py
    # measures it); costs a minute of compiling per process and needs a C++ compiler on CPU. For long runs.
    compile: bool = False
    # Under torchrun: "data" = DistributedDataParallel over every member (the global batch is split over ranks);
    # "ensemble" = member k trains alone on rank k % world_size (members are independent: no gradient traffic).
    distributed: Literal["data", "ensemble"] = "data"


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


def check_values(cfg: Config, source: str = "<config>") -> None:
    """Raise ConfigError for values that are well-typed but impossible."""

    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{source}: {key}: {why}")

    m, d, t = cfg.model, cfg.data, cfg.train
    if m.scale not in (2, 4, 8):
        raise bad("model.scale", f"must be 2, 4 or 8, got {m.scale}")
    for key, value in (("model.num_blocks", m.num_blocks), ("model.channels", m.channels),
                       ("model.d_channels", m.d_channels), ("model.d_dense", m.d_dense), ("model.d_pool", m.d_pool),
                       ("data.batch_size", d.batch_size), ("train.members", t.members),
                       ("train.g_updates", t.g_updates), ("train.d_updates", t.d_updates),
                       ("train.log_every", t.log_every), ("train.checkpoint_every", t.checkpoint_every),
                       ("train.gan_lr_decay_iteration", t.gan_lr_decay_iteration)):
        if value < 1:
            raise bad(key, f"must be at least 1, got {value}")
    for key, value in (("train.pretrain_steps", t.pretrain_steps), ("train.gan_iterations", t.gan_iterations),
                       ("train.val_every", t.val_every), ("data.num_workers", d.num_workers),
                       ("data.val_max_images", d.val_max_images), ("runtime.threads", cfg.runtime.threads),
                       ("data.val_holdout", d.val_holdout)):
        if value < 0:
            raise bad(key, f"must be 0 or more, got {value}")
    for order in ("first", "second"):
        for name, why in range_problems(getattr(d.degradation, order)):
            raise bad(f"data.degradation.{order}.{name}", why)
    if not 0.0 <= d.degradation.second_order_prob <= 1.0:
        raise bad("data.degradation.second_order_prob", "must be a probability in [0, 1]")
    if d.val_holdout and d.val_dir:
        raise bad("data.val_holdout", f"validates on held-out training images, but data.val_dir={d.val_dir!r} "
                                      "names a validation folder too; set one of them")
    if d.hr_patch % m.scale != 0:
        raise bad("data.hr_patch", f"{d.hr_patch} is not divisible by model.scale={m.scale}")
    if d.hr_patch < 16:
        raise bad("data.hr_patch", f"must be at least 16 (the discriminator halves it 4 times), got {d.hr_patch}")
    if d.train_lr_dirs and len(d.train_lr_dirs) != len(d.train_dirs):
        raise bad("data.train_lr_dirs", "needs one LR folder per folder in data.train_dirs")
    if not d.train_dirs:
        raise bad("data.train_dirs", "names no folder of training images")
    if m.d_channels * 8 > 4096:
        raise bad("model.d_channels", "too large")
    from mgsrgan.models.trunks import VGG16_LAYERS, VGG19_LAYERS  # local import: pulls torch; config stays light

    # the stlpips trunk is a VGG16 (1_1..5_3); imagenet and random are VGG19 (1_1..5_4)
    layers = VGG16_LAYERS if cfg.loss.vgg_weights == "stlpips" else VGG19_LAYERS
    if cfg.loss.content_layer not in layers:
        raise bad("loss.content_layer", f"unknown layer {cfg.loss.content_layer!r} for loss.vgg_weights="
                                        f"{cfg.loss.vgg_weights}; choose from {', '.join(layers)}")
    lo = cfg.loss
    for layer in lo.content_layers:
        if layer not in layers:
            raise bad("loss.content_layers", f"unknown layer {layer!r} for loss.vgg_weights={lo.vgg_weights}; "
                                             f"choose from {', '.join(layers)}")
    if len(lo.content_layer_weights) != len(lo.content_layers):
        raise bad("loss.content_layer_weights", f"{len(lo.content_layer_weights)} weights for "
                                                f"{len(lo.content_layers)} loss.content_layers; need one each")
    if any(w < 0 for w in lo.content_layer_weights) or lo.pixel_weight_gan < 0 or lo.adv_weight < 0 \
            or lo.content_weight < 0 or lo.grid_weight < 0:
        raise bad("loss", "loss weights must be 0 or more")
    if t.gan_select_max_psnr_drop < 0 or t.gan_select_max_artifact <= 0:
        raise bad("train.gan_select_max_psnr_drop", "the gan_select guards must be >= 0 dB and > 0 (a ratio)")
    if t.gan_select_max_shift <= 0:
        raise bad("train.gan_select_max_shift", f"the colour shift guard must be > 0 levels, got {t.gan_select_max_shift}")
    if t.gan_select != "last" and not (cfg.data.val_dir or cfg.data.val_holdout > 0):
        raise bad("train.gan_select", f"{t.gan_select!r} picks on held-out validation images; set data.val_dir or "
                                      "data.val_holdout, or use gan_select: last")
    if not 0.0 <= t.ema_decay < 1.0:
        raise bad("train.ema_decay", f"must be in [0, 1) (0 = off), got {t.ema_decay}")
    if t.g_learning_rate <= 0 or t.d_learning_rate <= 0:
        raise bad("train.g_learning_rate", "learning rates must be positive")


class OverrideText(str):
    """A `--set` value, still text: parsed as YAML only once the field's type is known, so that
    `--set loss.content_layer=5_3` stays the string "5_3" (YAML 1.1 would read 5_3 as the integer 53)."""


def _check_type(value: Any, hint: Any, key: str, source: str) -> Any:
    if isinstance(value, OverrideText):
        source = "--set"  # the value came from the command line, not from the file being read
    if isinstance(value, OverrideText) and hint == list[str]:
        value = yaml.load(value, Loader=yaml.BaseLoader)  # every item stays text: [1_2, 2_2] is two layer names
    elif isinstance(value, OverrideText):
        value = str(value) if hint is str else yaml.safe_load(value) if value.strip() else ""
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{source}: {key}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if origin is list:
        (item,) = typing.get_args(hint)
        if isinstance(value, str) and item is str:
            value = [value]  # a single folder is a list of one
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key}: expected a list, got {type(value).__name__}")
        return [_check_type(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        raise TypeError("unions are not used in the config")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{source}: {key}: expected true or false, got {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{source}: {key}: expected an integer, got {value!r}")
    if hint is float and not isinstance(value, float):
        raise ConfigError(f"{source}: {key}: expected a number, got {value!r}")
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"{source}: {key}: expected a string, got {value!r}")
    return value


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {prefix or 'top level'}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            if close:
                suggestion = f"{prefix}.{close[0]}" if prefix else close[0]
            else:
                suggestion = (difflib.get_close_matches(dotted, _all_keys(Config), n=1, cutoff=0.5) or [None])[0]
            hint = f"; did you mean {suggestion}?" if suggestion else f"; valid keys here: {', '.join(names)}"
            raise ConfigError(f"{source}: unknown key {dotted}{hint}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, dotted, source)
        else:
            kwargs[key] = _check_type(value, hint, dotted, source)
    return cls(**kwargs)


def _all_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(hints[f.name]):
            keys += _all_keys(hints[f.name], dotted)
        else:
            keys.append(dotted)
    return keys


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one `section.key=value` override (value parsed as YAML) to a raw config mapping, in place."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment}: expected section.key=value")
    dotted, text = assignment.split("=", 1)
    parts = dotted.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {assignment}: {part} is not a section")
    node[parts[-1]] = OverrideText(text)


def from_mapping(cls: type, raw: Any, prefix: str, source: str) -> Any:
    """Another dataclass (a campaign stage, ...) from a YAML mapping, as strictly as a Config: unknown keys, wrong
    types and missing fields are ConfigErrors naming `source` and `prefix`."""
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if not isinstance(raw, dict) or name not in raw]
    if isinstance(raw, dict) and missing:
        raise ConfigError(f"{source}: {prefix}: missing {', '.join(missing)}")
    return _build(cls, raw, prefix, source)


def config_from_dict(raw: dict, source: str = "<config>") -> Config:
    cfg = _build(Config, raw or {}, "", source)
    check_values(cfg, source)
    return cfg


def read_yaml(path: Path, what: str) -> Any:
    """A YAML file's content ({} when empty); ConfigError naming the file when it is missing or not YAML."""
    try:
        return yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read a YAML config (a preset, or a run's resolved RUN/config.yaml), apply `--set` overrides, and return a
    validated Config."""
    path = Path(path)
    raw = read_yaml(path, "config file")
    for assignment in overrides:
        apply_override(raw, assignment)
    return config_from_dict(raw, str(path))


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
