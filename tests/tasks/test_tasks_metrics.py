import contextlib
import io

import numpy as np
import pytest
import torch
import torchmetrics
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from nni_hrnas.data.keypoint_utils import COCO_SIGMAS
from nni_hrnas.tasks.metrics import MeanIoU, keypoint_results, oks_ap, topk_accuracy


def reference_miou(pred: np.ndarray, target: np.ndarray, n: int, ignore: int = 255) -> float:
    keep = target != ignore
    conf = np.zeros((n, n), np.int64)
    np.add.at(conf, (target[keep], pred[keep]), 1)
    ious = []
    for c in range(n):
        tp = conf[c, c]
        union = conf[c].sum() + conf[:, c].sum() - tp
        if union > 0:
            ious.append(tp / union)
    return float(np.mean(ious))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_miou_matches_confusion_matrix(seed):
    rng = np.random.default_rng(seed)
    n = 7
    target = rng.integers(0, n, size=(3, 20, 24))
    target[rng.random(target.shape) < 0.2] = 255
    pred = np.where(rng.random(target.shape) < 0.6, target, rng.integers(0, n, size=target.shape))
    pred = np.where(pred == 255, 0, pred)
    m = MeanIoU(n)
    # two batches, logits for one of them
    logits = torch.nn.functional.one_hot(torch.from_numpy(pred[:1]), n).permute(0, 3, 1, 2).float()
    m.update(logits, torch.from_numpy(target[:1]))
    m.update(torch.from_numpy(pred[1:]), torch.from_numpy(target[1:]))
    expected = reference_miou(pred, target, n)
    assert float(m.compute()) == pytest.approx(expected, abs=1e-9)
    tm = torchmetrics.JaccardIndex(task="multiclass", num_classes=n, ignore_index=255, average="macro")
    assert float(tm(torch.from_numpy(pred), torch.from_numpy(target))) == pytest.approx(expected, abs=1e-6)


def test_miou_ignores_absent_classes():
    m = MeanIoU(5)
    m.update(torch.tensor([[0, 1, 1, 255]]), torch.tensor([[0, 1, 255, 255]]))
    # class 0: 1/1, class 1: 1/2 (the prediction on an ignored pixel does not count), 2..4 absent
    assert float(m.compute()) == pytest.approx((1.0 + 1.0) / 2)
    with pytest.raises(ValueError, match="outside"):
        m.update(torch.tensor([[0]]), torch.tensor([[7]]))


def test_topk_by_hand():
    logits = torch.tensor(
        [
            [0.1, 0.9, 0.0, 0.2, 0.3, 0.4],
            [0.8, 0.1, 0.0, 0.2, 0.3, 0.4],
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
            [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],
        ]
    )
    target = torch.tensor([1, 5, 0, 1])
    # top-1: rows 0 only -> 1/4. top-5: row 0 yes, row 1 (5 is 2nd) yes, row 2 (0 is last) no, row 3 yes
    acc = topk_accuracy(logits, target, (1, 5))
    assert acc[1] == pytest.approx(0.25) and acc[5] == pytest.approx(0.75)


def make_gt(rng, n_images=6, per_image=2):
    images, anns = [], []
    ann_id = 1
    for i in range(n_images):
        images.append(dict(id=i + 1, width=400, height=300, file_name=f"{i + 1:012d}.jpg"))
        for _ in range(per_image):
            x, y = rng.uniform(0, 200), rng.uniform(0, 100)
            w, h = rng.uniform(60, 150), rng.uniform(100, 180)
            kps = np.column_stack([x + rng.uniform(0, w, 17), y + rng.uniform(0, h, 17), np.full(17, 2.0)])
            kps[rng.random(17) < 0.15] = 0
            anns.append(
                dict(
                    id=ann_id,
                    image_id=i + 1,
                    category_id=1,
                    keypoints=kps.reshape(-1).tolist(),
                    num_keypoints=int((kps[:, 2] > 0).sum()),
                    area=float(w * h * 0.7),
                    bbox=[x, y, w, h],
                    iscrowd=0,
                )
            )
            ann_id += 1
    coco = COCO()
    coco.dataset = dict(images=images, annotations=anns, categories=[dict(id=1, name="person")])
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco, anns


def test_oks_ap_exact_and_perturbed():
    rng = np.random.default_rng(0)
    coco, anns = make_gt(rng)
    exact = [
        dict(
            image_id=a["image_id"],
            category_id=1,
            score=1.0,
            keypoints=[float(v) if (k % 3) != 2 else 1.0 for k, v in enumerate(a["keypoints"])],
        )
        for a in anns
    ]
    assert oks_ap(coco, exact)["AP"] == pytest.approx(1.0)
    perturbed = []
    for a in anns:
        kp = np.asarray(a["keypoints"], float).reshape(17, 3)
        kp[:, :2] += rng.normal(0, rng.uniform(1, 12), (17, 2))
        kp[:, 2] = 1.0
        perturbed.append(
            dict(
                image_id=a["image_id"],
                category_id=1,
                score=float(rng.uniform(0.2, 1)),
                keypoints=kp.reshape(-1).tolist(),
            )
        )
    ours = oks_ap(coco, perturbed)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(perturbed), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ours["AP"] == pytest.approx(ev.stats[0]) and ours["AR"] == pytest.approx(ev.stats[5])
    assert 0.0 < ours["AP"] < 1.0
    assert oks_ap(coco, [])["AP"] == 0.0


def test_keypoint_results_rescore_and_nms():
    coords = np.zeros((3, 17, 2))
    coords[:, :, 0] = np.arange(17) * 5.0
    coords[2] += 200.0  # far away: not suppressed
    maxvals = np.full((3, 17), 0.8)
    maxvals[0, :5] = 0.1  # below the 0.2 visibility threshold: left out of the rescoring mean
    res = keypoint_results(
        coords, maxvals, [5, 5, 5], [0.5, 0.9, 1.0], [900.0, 900.0, 900.0], sigmas=COCO_SIGMAS
    )
    # 0 and 1 are the same pose: OKS NMS keeps the higher score (1: 0.9 * 0.8)
    assert len(res) == 2
    assert sorted(r["score"] for r in res) == pytest.approx([0.72, 0.8])
    assert len(res[0]["keypoints"]) == 51


# Hand-computed OKS and AP (COCO's definitions, written out here, not read from pycocotools):
#   OKS = mean over the ground truth's visible joints of exp(-d^2 / (2 * area * (2 sigma)^2)),
#   AP  = mean over the OKS thresholds 0.50, 0.55, ..., 0.95 of the precision interpolated at the 101
#         recall points 0, 0.01, ..., 1 (the best precision at any recall at or above each point).
AREA = 10_000.0
VISIBLE = (0, 5, 9, 11)  # nose, left shoulder, left wrist, left hip
WRIST_SIGMA = 0.062  # COCO's left-wrist sigma (0.62 / 10)
# moves the wrist so that exp(-d^2 / (2 * area * (2 sigma)^2)) = 1/2 exactly
WRIST_OFFSET = 2 * WRIST_SIGMA * np.sqrt(2 * AREA * np.log(2))


def _person(x0: float) -> np.ndarray:
    kps = np.zeros((17, 3))
    for j in VISIBLE:
        kps[j] = [x0 + 7.0 * j, 40.0 + 11.0 * j, 2.0]
    return kps


def _hand_gt(people: list[np.ndarray]):
    anns = [
        dict(
            id=i + 1,
            image_id=1,
            category_id=1,
            keypoints=p.reshape(-1).tolist(),
            num_keypoints=len(VISIBLE),
            area=AREA,
            bbox=[float(p[VISIBLE, 0].min()), 40.0, 100.0, 100.0],
            iscrowd=0,
        )
        for i, p in enumerate(people)
    ]
    coco = COCO()
    coco.dataset = dict(
        images=[dict(id=1, width=640, height=480)], annotations=anns, categories=[dict(id=1, name="person")]
    )
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _detection(kps: np.ndarray, score: float, wrong_wrist: bool = False) -> dict:
    kps = kps.copy()
    kps[:, 2] = 1.0
    if wrong_wrist:
        kps[9, 0] += WRIST_OFFSET
    return dict(image_id=1, category_id=1, keypoints=kps.reshape(-1).tolist(), score=score)


def test_oks_ap_one_person_by_hand():
    person = _person(50.0)
    coco = _hand_gt([person])
    perfect = oks_ap(coco, [_detection(person, 0.9)])
    assert perfect["AP"] == pytest.approx(1.0) and perfect["AR"] == pytest.approx(1.0)
    # one wrong joint of four visible: OKS = (3 + 1/2) / 4 = 0.875, matched at the 8 thresholds 0.50 ... 0.85
    # (AP_t = 1 there), missed at 0.90 and 0.95 (AP_t = 0): AP = 8 / 10
    one_wrong = oks_ap(coco, [_detection(person, 0.9, wrong_wrist=True)])
    assert one_wrong["AP"] == pytest.approx(0.8, abs=1e-9) and one_wrong["AR"] == pytest.approx(0.8, abs=1e-9)
    assert one_wrong["AP50"] == pytest.approx(1.0) and one_wrong["AP75"] == pytest.approx(1.0)


def test_oks_ap_two_persons_and_their_score_order_by_hand():
    """Persons A (exact detection) and B (one wrong joint, OKS 0.875), 250 px apart (cross OKS ~ 0).
    At the thresholds 0.50 ... 0.85 both match: AP_t = 1. At 0.90 and 0.95 only A does, recall 1/2:
    A ranked first: precision 1 at the 51 recall points 0 ... 0.50, AP_t = 51/101;
    B ranked first (its false positive before A's hit): precision 1/2 there, AP_t = 51/202."""
    a, b = _person(50.0), _person(300.0)
    coco = _hand_gt([a, b])
    a_first = oks_ap(coco, [_detection(a, 0.9), _detection(b, 0.8, wrong_wrist=True)])
    b_first = oks_ap(coco, [_detection(a, 0.8), _detection(b, 0.9, wrong_wrist=True)])
    assert a_first["AP"] == pytest.approx((8 + 2 * 51 / 101) / 10, abs=1e-9)
    assert b_first["AP"] == pytest.approx((8 + 2 * 51 / 202) / 10, abs=1e-9)
    for stats in (a_first, b_first):  # recall does not depend on the order: 8 thresholds at 1, two at 1/2
        assert stats["AR"] == pytest.approx((8 + 2 * 0.5) / 10, abs=1e-9)


def test_oks_of_the_nms_by_hand():
    """oks_iou (the NMS's OKS, every joint, mean of the two areas): one of 17 joints off by WRIST_OFFSET."""
    from nni_hrnas.data.keypoint_utils import oks_iou

    g = np.zeros((17, 3))
    g[:, 0] = np.arange(17) * 5.0
    d = g.copy()
    d[9, 0] += WRIST_OFFSET
    oks = oks_iou(g, np.stack([g, d]), AREA, np.array([AREA, AREA]), COCO_SIGMAS)
    assert oks == pytest.approx([1.0, (16 + 0.5) / 17], abs=1e-12)
