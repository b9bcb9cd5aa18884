"""Mammography CAD figures of trained weights on a datalist with reference circles (``sum-monai evaluate``).

The bundle's own inferer (its fold ensemble) gives each film's class probabilities on the loaded
grid (:class:`~sum_monai.workflows.oof.GridPredictor`); its components are scored against the
circles of ``meta.lesions`` (:mod:`sum_monai.scoring.detection`): the FROC over the component
score thresholds, and sensitivity, false positives per film and film class at the bundle's own
``lesion_threshold`` (the operating point it ships with).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sum_monai.bundle.locate import Bundle
from sum_monai.scoring.detection import FILM_CLASSES, film_class_scores, film_result, froc, operating_point
from sum_monai.scoring.levers import THRESHOLDS
from sum_monai.scoring.report import GROUPS, circles_of, plot_froc
from sum_monai.workflows.oof import GridPredictor


def score_detection(
    bundle: Bundle,
    weights: Path,
    cases: list[dict[str, Any]],
    lesions: dict[str, list[dict[str, Any]]],
    overrides: dict[str, Any],
    threshold: float,
    out_dir: Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Detection and film-class figures of ``weights`` on ``cases`` (absolute paths).

    Returns:
        ``threshold``, ``sensitivity`` (all and per group), ``fp_per_film``, ``confusion``,
        ``balanced_accuracy``, ``normal_with_lesion``, ``malignant_auc``, ``froc`` rows and the
        ``table`` text; ``froc.png`` is written into ``out_dir``.
    """
    from tqdm import tqdm

    predictor = GridPredictor.from_bundle(bundle, weights, overrides)
    films = []
    for case in tqdm(cases, desc="detection", disable=not progress):
        loaded = predictor.loaded(case)
        image = loaded["image"]
        flipped = bool(getattr(image, "meta", {}).get("orient_flipped", False))
        circles = circles_of(case["case_id"], int(image.shape[1]), flipped, lesions)
        films.append(film_result(case["case_id"], 0, str(case.get("class", "")), circles, predictor.bundle_probabilities(loaded)))
    sens, fp = operating_point(films, threshold)
    fc = film_class_scores(films, threshold)
    rows = [
        {"threshold": t, "sensitivity": s, "fp_per_film": f, **{f"sensitivity_{g}": operating_point(films, t, g)[0] for g in GROUPS}}
        for t, s, f in froc(films, THRESHOLDS)
    ]
    plot_froc(rows, out_dir / "froc.png")
    result: dict[str, Any] = {
        "threshold": threshold, "sensitivity": sens, "fp_per_film": fp,
        **{f"sensitivity_{g}": operating_point(films, threshold, g)[0] for g in GROUPS},
        "confusion": fc.confusion.tolist(), "balanced_accuracy": fc.balanced_accuracy,
        "normal_with_lesion": fc.normal_with_lesion, "malignant_auc": fc.malignant_auc, "froc": rows,
        "lesions": sum(len(f.circles) for f in films), "films": len(films),
    }  # fmt: skip
    result["table"] = format_detection(result)
    return result


def format_detection(r: dict[str, Any]) -> str:
    """The detection lines of the evaluation table."""
    lines = [
        f"lesion detection at the bundle's lesion_threshold {r['threshold']:g} ({r['lesions']} lesions, {r['films']} films):",
        f"  sensitivity {r['sensitivity']:.3f} (masses {r['sensitivity_mass']:.3f}, calcifications "
        f"{r['sensitivity_calcification']:.3f}, other {r['sensitivity_other']:.3f}) at {r['fp_per_film']:.2f} false positives per film",
        f"film class: balanced accuracy {r['balanced_accuracy']:.3f}, malignant-vs-rest AUC {r['malignant_auc']:.3f}, "
        f"normal films with a predicted lesion {r['normal_with_lesion']:.1%}",
        "  confusion (rows truth, columns predicted): "
        + "; ".join(f"{n}: {row}" for n, row in zip(FILM_CLASSES, r["confusion"], strict=True)),
        "FROC: " + ", ".join(f"{x['threshold']:g}: {x['sensitivity']:.2f} @ {x['fp_per_film']:.2f}" for x in r["froc"]),
    ]
    return "\n".join(lines)
