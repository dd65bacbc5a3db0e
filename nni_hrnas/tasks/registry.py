"""The task registry: what ``hrnas search --task T`` and the experiments build a task from.

>>> spec = get_task('digits_seg')
>>> evaluator = spec.make_evaluator(None, epochs=3, batch_size=32)   # an NNI Lightning evaluator

Data roots come from the ``root`` argument, else the task's environment variable
(``CITYSCAPES_ROOT``, ``ADE20K_ROOT``, ``COCO_ROOT``, ``IMAGENET_ROOT``, ``KITTI_ROOT``), else a clear
error; ``kitti_sim`` writes its simulated scenes once under ``$HRNAS_CACHE`` unless given a root.
``HRNAS_SMOKE=1`` (or ``smoke=True``) shrinks data, inputs and epochs to a check of a minute.
Progress bars and Lightning's logger are on, except when ``CI`` or ``HRNAS_QUIET`` is set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..data import ade20k, cityscapes, coco_keypoints, digits, imagenet, kitti
from ..data.common import smoke_mode
from ..detection.pillars import SIM_PILLARS, PillarSettings
from .base import TaskModule

if TYPE_CHECKING:
    from torch import nn

    from .evaluator import TaskEvaluator

Kind = Literal['segmentation', 'keypoints', 'classification', 'detection']

SMOKE_LIMITS = {'train': 16, 'val': 8}


def quiet_mode() -> bool:
    """True when ``CI`` or ``HRNAS_QUIET`` is set: the evaluators' trainers show no progress bar and
    keep no Lightning logs."""
    return any(os.environ.get(v, '').strip().lower() not in ('', '0', 'false', 'no')
               for v in ('CI', 'HRNAS_QUIET'))


@dataclass(frozen=True)
class TaskSpec:
    """Everything the search needs to know about a task.

    ``train_input_size`` is the (C, H, W) the model sees in training (``smoke_input_size`` under
    smoke); ``num_outputs`` the classes, or heatmaps for keypoints; ``metric`` the name of the
    ``'default'`` metric (higher is better).
    """

    name: str
    kind: Kind
    default_preset: str
    train_input_size: tuple[int, int, int]
    smoke_input_size: tuple[int, int, int]
    num_outputs: int
    metric: str
    root_env: str | None
    default_epochs: int
    default_batch_size: int
    val_batch_size: int
    datasets_fn: Callable[..., tuple[Any, Any]] = field(repr=False)
    module_fn: Callable[..., TaskModule] = field(repr=False)
    module_defaults: dict[str, Any] = field(default_factory=dict, repr=False)
    base_batch_size: int | None = None  # the learning rate scales with batch_size / base_batch_size
    num_workers: int = 0

    @property
    def in_channels(self) -> int:
        """The input's channels."""
        return self.train_input_size[0]

    def input_size(self, smoke: bool | None = None) -> tuple[int, int, int]:
        """(C, H, W) the model sees in training, the smaller one under smoke."""
        return self.smoke_input_size if (smoke_mode() if smoke is None else smoke) else self.train_input_size

    def make_datasets(self, root: str | None = None, smoke: bool | None = None, seed: int = 0,
                      **kwargs: Any) -> tuple[Any, Any]:
        """(train, val) data sets; ``kwargs`` go to the loaders (e.g. ``on_error='skip'``)."""
        smoke = smoke_mode() if smoke is None else smoke
        return self.datasets_fn(root=root, smoke=smoke, seed=seed, **kwargs)

    def make_lightning_module(self, **kwargs: Any) -> TaskModule:
        """The task's Lightning module; ``kwargs`` override the task defaults (optimizer,
        learning_rate, weight_decay, schedule, warmup_epochs, milestones, cost_fn, ...)."""
        return self.module_fn(**{**self.module_defaults, **kwargs})

    def make_evaluator(self, model: nn.Module | None = None, epochs: int | None = None,
                       batch_size: int | None = None, *, root: str | None = None, smoke: bool | None = None,
                       seed: int = 0, cost_fn: Callable[[nn.Module], dict[str, Any]] | None = None,
                       datasets: tuple[Any, Any] | None = None, num_workers: int | None = None,
                       module_kwargs: dict[str, Any] | None = None, dataset_kwargs: dict[str, Any] | None = None,
                       **trainer_kwargs: Any) -> TaskEvaluator:
        """An NNI ``Lightning`` evaluator (traced ``Trainer`` and ``DataLoader``s).

        ``model`` (optional) is set on the module at once; the evaluator sets it again in
        ``evaluate``. ``trainer_kwargs`` override the trainer defaults.
        """
        from nni.nas.evaluator.pytorch import DataLoader

        from .evaluator import TaskEvaluator

        smoke = smoke_mode() if smoke is None else smoke
        epochs = 1 if smoke else (epochs or self.default_epochs)
        batch_size = batch_size or self.default_batch_size
        train_ds, val_ds = datasets or self.make_datasets(root, smoke, seed, **(dataset_kwargs or {}))
        batch_size = max(1, min(batch_size, len(train_ds)))
        workers = self.num_workers if num_workers is None else num_workers
        loader_kw = dict(num_workers=workers, persistent_workers=workers > 0)
        train_dl = DataLoader(train_ds, batch_size=batch_size, shuffle=True, drop_last=len(train_ds) > batch_size,
                              **loader_kw)
        val_dl = DataLoader(val_ds, batch_size=min(self.val_batch_size, batch_size) if self.val_batch_size > 1
                            else 1, shuffle=False, **loader_kw)
        mkw = dict(module_kwargs or {})
        if self.base_batch_size and 'learning_rate' not in mkw and 'learning_rate' in self.module_defaults:
            mkw['learning_rate'] = self.module_defaults['learning_rate'] * batch_size / self.base_batch_size
        module = self.make_lightning_module(cost_fn=cost_fn, **mkw)
        if model is not None:
            module.set_model(model)
        if getattr(module, 'coco_gt', False) is None and hasattr(val_ds, 'coco_gt'):
            # the OKS evaluation's ground truth, also for loops that run the module without a Trainer
            module.coco_gt = val_ds.coco_gt()
        if getattr(module, 'val_frames', False) is None and hasattr(val_ds, 'annotations'):
            module.val_frames = val_ds  # the KITTI evaluation's labels and calibrations
        quiet = quiet_mode()
        steps = max(len(train_ds) // batch_size, 1)
        tkw: dict[str, Any] = dict(max_epochs=epochs, accelerator='auto', devices=1, enable_progress_bar=not quiet,
                                   enable_model_summary=False, logger=not quiet, enable_checkpointing=False,
                                   num_sanity_val_steps=0 if smoke else 2, log_every_n_steps=min(50, steps))
        if os.environ.get('NNI_OUTPUT_DIR'):
            tkw['default_root_dir'] = os.environ['NNI_OUTPUT_DIR']
        tkw.update(trainer_kwargs)
        return TaskEvaluator(module, tkw, train_dataloaders=train_dl, val_dataloaders=val_dl)


# ---- data set factories -----------------------------------------------------------------------

def _limits(smoke: bool, limit: int | None, split: str):
    return SMOKE_LIMITS[split] if smoke and limit is None else limit


def _cityscapes(root, smoke, seed, limit=None, on_error='raise'):
    kw = dict(smoke=smoke, on_error=on_error)
    return (cityscapes.Cityscapes(root, 'train', limit=_limits(smoke, limit, 'train'), **kw),
            cityscapes.Cityscapes(root, 'val', limit=_limits(smoke, limit, 'val'), **kw))


def _ade20k(root, smoke, seed, limit=None, on_error='raise'):
    kw = dict(smoke=smoke, on_error=on_error)
    return (ade20k.ADE20K(root, 'train', limit=_limits(smoke, limit, 'train'), **kw),
            ade20k.ADE20K(root, 'val', limit=_limits(smoke, limit, 'val'), **kw))


def _coco(root, smoke, seed, limit=None, on_error='raise', image_size=(192, 256), detections=None):
    kw = dict(on_error=on_error, image_size=image_size)
    return (coco_keypoints.COCOKeypoints(root, 'train', limit=_limits(smoke, limit, 'train'), **kw),
            coco_keypoints.COCOKeypoints(root, 'val', limit=_limits(smoke, limit, 'val'), detections=detections, **kw))


def _imagenet(root, smoke, seed, limit=None, on_error='raise'):
    size = 64 if smoke else 224
    train = imagenet.ImageNet(root, 'train', size=size, limit=_limits(smoke, limit, 'train'), on_error=on_error)
    val = imagenet.ImageNet(root, 'val', size=size, classes=train.classes, limit=_limits(smoke, limit, 'val'),
                            on_error=on_error)
    return train, val


def _digits(fn):
    def make(root, smoke, seed, sizes=None):
        # root is accepted and ignored: the digits sets are built from scikit-learn's copy
        return fn(seed=seed, smoke=smoke, sizes=sizes)
    return make


def _kitti(root, smoke, seed, limit=None, on_error='raise'):
    kw = dict(pillars=PillarSettings(), on_error=on_error, seed=seed)
    return (kitti.KittiDetection(root, 'train', limit=_limits(smoke, limit, 'train'), **kw),
            kitti.KittiDetection(root, 'val', limit=_limits(smoke, limit, 'val'), **kw))


def _kitti_sim(root, smoke, seed, sizes=None):
    """The simulated scenes (written once under $HRNAS_CACHE), or a root that write_kitti_sim wrote."""
    from ..data import kitti_sim

    if root is None:
        train, val = (16, 8) if smoke else (sizes or (kitti_sim.SimSettings.train_frames,
                                                      kitti_sim.SimSettings.val_frames))
        root = kitti_sim.cached_kitti_sim(kitti_sim.SimSettings(train_frames=int(train), val_frames=int(val)), seed)
    kw = dict(pillars=SIM_PILLARS, seed=seed, name='kitti_sim')
    return kitti.KittiDetection(str(root), 'train', **kw), kitti.KittiDetection(str(root), 'val', **kw)


def _detection(**kw):
    from .detection import DetectionModule
    return DetectionModule(**kw)


def _segmentation(**kw):
    from .segmentation import SegmentationModule
    return SegmentationModule(**kw)


def _keypoints(**kw):
    from .keypoints import KeypointsModule
    return KeypointsModule(**kw)


def _classification(**kw):
    from .classification import ClassificationModule
    return ClassificationModule(**kw)


_SEG_REAL = dict(optimizer='adamw', learning_rate=0.04, weight_decay=1e-5, schedule='onecycle')
_KP_REAL = dict(optimizer='adam', learning_rate=1e-3, weight_decay=1e-8, schedule='multistep', milestones=(170, 200))
_CLS_REAL = dict(optimizer='rmsprop', learning_rate=0.016, weight_decay=1e-5, schedule='exp', label_smoothing=0.1)

TASKS: dict[str, TaskSpec] = {
    'cityscapes': TaskSpec(
        'cityscapes', 'segmentation', 'cityscapes', (3, 512, 1024), (3, 128, 256), 19, 'miou', 'CITYSCAPES_ROOT',
        430, 4, 1, _cityscapes, _segmentation, dict(num_classes=19, **_SEG_REAL), base_batch_size=32, num_workers=2),
    'ade20k': TaskSpec(
        'ade20k', 'segmentation', 'ade20k', (3, 512, 512), (3, 128, 128), 150, 'miou', 'ADE20K_ROOT',
        200, 8, 1, _ade20k, _segmentation, dict(num_classes=150, **_SEG_REAL), base_batch_size=32, num_workers=2),
    'coco_keypoints': TaskSpec(
        'coco_keypoints', 'keypoints', 'coco_keypoints', (3, 256, 192), (3, 256, 192), 17, 'ap', 'COCO_ROOT',
        210, 32, 32, _coco, _keypoints, dict(num_joints=17, **_KP_REAL), base_batch_size=384, num_workers=2),
    'imagenet': TaskSpec(
        'imagenet', 'classification', 'imagenet', (3, 224, 224), (3, 64, 64), 1000, 'top1', 'IMAGENET_ROOT',
        350, 64, 64, _imagenet, _classification, dict(num_classes=1000, **_CLS_REAL), base_batch_size=256,
        num_workers=2),
    # PointPillars' car setting: 160 epochs of Adam (one cycle), batch 2 per device; moderate 3D AP (R40)
    'kitti': TaskSpec(
        'kitti', 'detection', 'kitti', (64, 496, 432), (64, 496, 432), 20, 'ap3d_moderate', 'KITTI_ROOT',
        160, 2, 2, _kitti, _detection, dict(pillars=PillarSettings(), optimizer='adamw', learning_rate=2e-3,
                                            weight_decay=1e-2, schedule='onecycle'), base_batch_size=2, num_workers=2),
    'kitti_sim': TaskSpec(
        'kitti_sim', 'detection', 'kitti_sim', (32, 128, 128), (32, 128, 128), 20, 'ap3d_moderate', None,
        10, 4, 8, _kitti_sim, _detection, dict(pillars=SIM_PILLARS, anchors=dict(z_centre=-0.95),
                                               optimizer='adamw', learning_rate=3e-3, weight_decay=1e-2,
                                               schedule='onecycle')),
    'digits_seg': TaskSpec(
        'digits_seg', 'segmentation', 'digits_seg', (1, 64, 64), (1, 64, 64), digits.SEG_NUM_CLASSES, 'miou', None,
        10, 32, 100, _digits(digits.digits_seg), _segmentation,
        dict(num_classes=digits.SEG_NUM_CLASSES, optimizer='adamw', learning_rate=3e-3, weight_decay=1e-4,
             schedule='onecycle')),
    'digits_cls': TaskSpec(
        'digits_cls', 'classification', 'digits_cls', (1, 32, 32), (1, 32, 32), 10, 'top1', None,
        10, 64, 200, _digits(digits.digits_cls), _classification,
        dict(num_classes=10, optimizer='adamw', learning_rate=3e-3, weight_decay=1e-4, schedule='onecycle',
             label_smoothing=0.1)),
    'digits_kp': TaskSpec(
        'digits_kp', 'keypoints', 'digits_kp', (1, 64, 64), (1, 64, 64), digits.KP_NUM_JOINTS, 'ap', None,
        10, 32, 100, _digits(digits.digits_kp), _keypoints,
        dict(num_joints=digits.KP_NUM_JOINTS, flip_pairs=digits.KP_FLIP_PAIRS, sigmas=tuple(digits.KP_SIGMAS),
             optimizer='adamw', learning_rate=3e-3, weight_decay=1e-4, schedule='onecycle', milestones=())),
}


def task_names() -> list[str]:
    """The names of the registered tasks (what ``--task`` accepts)."""
    return list(TASKS)


def get_task(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of ``name``; a ValueError lists the valid names."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f'Unknown task {name!r}; valid tasks: {", ".join(TASKS)}') from None
