#!/usr/bin/env python3
"""Export an lmms-eval task into mlvf's local benchmark format (``mmeval-jsonl/1``).

    python scripts/export_lmms_task.py --task gqa --out benchmarks/gqa
    python scripts/export_lmms_task.py --task pope_adv --out benchmarks/pope_adv --limit 200
    python scripts/export_lmms_task.py --self-test --out /tmp/selftest   # no lmms-eval / HF needed

What it does
------------
It asks lmms-eval itself for everything that decides a number: the task's dataset and split
(``TaskManager(model_name="llava")`` + ``get_task_dict``), the context string (``task.doc_to_text``
with the kwargs ``--model llava`` resolves to, i.e. the ``default`` block), the images
(``task.doc_to_visual``, already ``.convert("RGB")``), and ``generation_kwargs.max_new_tokens``.
Docs are written in ``task.eval_docs`` order, so row *i* of ``data.jsonl`` is lmms-eval's
``doc_id`` *i* (that is how ``mlvf score`` matches lmms-eval ``--log_samples`` files).
Per task, a small table (``TASKS`` below) maps dataset fields to the record fields the scorers read
(``answer``/``answers``, ``group``, ``category``, ``subset``, ``qtype``, ``options``) and names the
scorer and primary metric (eval.md §3, §7).

Images are stored once per content hash under ``images/<sha256[:16]>.<ext>``. The original encoded
bytes are kept when the dataset row holds them (PNG or JPEG) *and* PIL decodes them to exactly the
pixels ``doc_to_visual`` returned; otherwise (GQA's joined images, other encodings, any mismatch)
the RGB image from ``doc_to_visual`` is written as a lossless PNG. Either way the stored file decodes
to the pixels lmms-eval feeds the model.

Honesty note
------------
Written against lmms-eval commit 75571cfe (v0.7.2+, 2026-08-06) by reading its code; it could not be
run end to end where it was written (no Hugging Face access, lmms-eval not installed). ``--self-test``
exercises the writer on synthetic docs and drives ``export_task`` itself against stand-ins for
``lmms_eval.tasks`` and ``datasets`` that mimic the interfaces used here (task config, eval_docs,
doc_to_text/doc_to_visual, cast_column with ``Image(decode=False)``); ``mlvf score`` loads what it
writes. The real lmms-eval/HF calls are therefore untested. Check a fresh export with
``--limit 20`` and compare ``prompt`` against an lmms-eval ``--log_samples`` ``input`` before trusting it.
"""
import argparse
import ast
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types

FORMAT = "mmeval-jsonl/1"
SCORER_VERSION = "head-2026-08"
CLASSIC_VERSION = "classic-v0.4"

# --scorers classic-v0.4: what lmms-eval v0.3.5–v0.4 (most 2024–25 papers) scored with (eval.md §9).
# Prompts and max_new_tokens still come from the installed lmms-eval; install the matching version.
CLASSIC_OVERRIDES = {
    "vqav2_val": ("vqa_acc", {"normalize": "classic_v04"}),
    "mmstar": ("mmstar_classic", {}),
    "mmmu_val": ("mmmu", {"open_ended": "head_bug"}),
}


def _letter(i):
    return chr(65 + int(i))


def _s(x):
    """Text of a scalar field; None stays None."""
    return None if x is None else str(x)


def _mode(values):
    best, count = None, -1
    for v in values:
        c = values.count(v)
        if c > count:
            best, count = v, c
    return best


def _mmbench(doc, i):
    index = int(doc["index"])
    options = [str(doc[c]) for c in "ABCDE" if c in doc and doc[c] is not None and str(doc[c]) not in ("", "nan")]
    return dict(id=str(index), answer=str(doc["answer"]), options=options, group=str(index % 1_000_000),
                category=_s(doc.get("category")), subcategory=_s(doc.get("l2-category")),
                meta={"main": index < 1_000_000, "index": index})


def _mmmu(doc, i):
    options = ast.literal_eval(doc["options"]) if doc.get("options") else []
    subject = re.sub(r"_\d+$", "", doc["id"].split("_", 1)[1])
    return dict(id=doc["id"], answer=str(doc["answer"]), options=[str(o) for o in options] or None,
                category=subject, qtype=doc["question_type"])


def _mmvp(doc, i):
    index = int(doc.get("Index", doc.get("index", i + 1)))
    return dict(id=str(index), answer=str(doc.get("Correct Answer", doc.get("answer", ""))),
                group=str((index - 1) // 2), question=_s(doc.get("Question")))


def _vqav2(doc, i):
    answers = [a["answer"] for a in doc.get("answers") or []]
    return dict(id=str(doc["question_id"]), answer=str(doc.get("multiple_choice_answer") or _mode(answers) or ""),
                answers=answers)


def _pope(doc, i):
    return dict(id=str(doc["question_id"]), answer=str(doc["answer"]), subset=_s(doc.get("category")))


# task → (scorer, primary metric, report scale, scorer_options, record mapper)
TASKS = {
    "gqa": ("exact_match_hf", "exact_match", 100, {}, lambda d, i: dict(id=str(d["question_id"]), answer=str(d["answer"]))),
    "mme": ("mme_yesno", "mme_perception_score", 1, {},
            lambda d, i: dict(id=str(i), answer=str(d["answer"]), group=str(d["question_id"]), category=str(d["category"]))),
    "mmbench_en_dev": ("mmbench_circular", "gpt_eval_score", 1, {}, _mmbench),
    "mmbench_en_dev_static": ("mmbench_circular", "gpt_eval_score", 1, {}, _mmbench),
    "seedbench": ("seed_first_char", "seed_image", 100, {},
                  lambda d, i: dict(id=str(d["question_id"]), answer=str(d["answer"]), subset=str(d["data_type"]),
                                    options=[str(d[f"choice_{c}"]) for c in "abcd"])),
    "textvqa_val": ("vqa_acc", "exact_match", 100, {"normalize": "evalai_full"},
                    lambda d, i: dict(id=str(d["question_id"]), answer=str(_mode(list(d["answers"])) or ""),
                                      answers=[str(a) for a in d["answers"]])),
    "vqav2_val": ("vqa_acc", "exact_match", 100, {"normalize": "punct_digit"}, _vqav2),
    "scienceqa_img": ("sqa_letter", "exact_match", 100, {},
                      lambda d, i: dict(id=str(i), answer=_letter(d["answer"]), options=[str(c) for c in d["choices"]],
                                        category=_s(d.get("subject")))),
    "pope": ("pope_exact", "pope_f1_subset_mean", 100, {}, _pope),
    "pope_adv": ("pope_exact", "pope_f1_score", 100, {}, _pope),
    "pope_pop": ("pope_exact", "pope_f1_score", 100, {}, _pope),
    "pope_random": ("pope_exact", "pope_f1_score", 100, {}, _pope),
    "mmmu_val": ("mmmu", "mmmu_acc", 100, {"open_ended": "official"}, _mmmu),
    "mmstar": ("mcq_extract", "average", 100, {},
               lambda d, i: dict(id=str(d["index"]), answer=str(d["answer"]), category=_s(d.get("category")),
                                 subcategory=_s(d.get("l2_category")))),
    "ai2d": ("ai2d_letter", "exact_match", 100, {},
             lambda d, i: dict(id=str(i), answer=_letter(d["answer"]), options=[str(o) for o in d["options"]])),
    "chartqa": ("relaxed_acc", "relaxed_overall", 100, {},
                lambda d, i: dict(id=str(i), answer=str(d["answer"]),
                                  subset="human" if d.get("type") == "human_test" else "augmented")),
    "docvqa_val": ("anls", "anls", 100, {},
                   lambda d, i: dict(id=str(d["questionId"]), answer=str(d["answers"][0]),
                                     answers=[str(a) for a in d["answers"]])),
    "ocrbench": ("ocrbench_contains", "ocrbench_accuracy", 1000, {},
                 lambda d, i: dict(id=str(i), answer=str(list(d["answer"])[0] if isinstance(d["answer"], list) else d["answer"]),
                                   answers=[str(a) for a in d["answer"]] if isinstance(d["answer"], list) else [str(d["answer"])],
                                   category=str(d["question_type"]), qtype=str(d["dataset"]))),
    "realworldqa": ("realworldqa", "exact_match", 100, {}, lambda d, i: dict(id=str(i), answer=str(d["answer"]))),
    "mmvp": ("mmvp_letter", "mmvp_pair_accuracy", 100, {}, _mmvp),
    "cv_bench": ("cvbench_letter", "cv_bench_official", 100, {},
                 lambda d, i: dict(id=str(d["idx"]), answer=str(d["answer"]), options=[str(c) for c in d["choices"]],
                                   subset=str(d["source"]), category=str(d["task"]))),
}
TASKS["cv_bench_2d"] = TASKS["cv_bench"]
TASKS["cv_bench_3d"] = TASKS["cv_bench"]

RECORD_FIELDS = ("id", "images", "prompt", "answer", "answers", "question", "options", "group", "category",
                 "subcategory", "subset", "qtype", "meta")


def _jsonable(v):
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


class ImageStore:
    """Content-addressed image directory; keeps original bytes when they decode to the same pixels."""

    def __init__(self, bench_dir):
        self.dir = os.path.join(bench_dir, "images")
        os.makedirs(self.dir, exist_ok=True)
        self.kept_original = 0
        self.reencoded = 0

    def put(self, rgb_image, original_bytes=None):
        from PIL import Image, ImageChops

        data, ext = None, None
        if original_bytes:
            try:
                src = Image.open(io.BytesIO(original_bytes))
                fmt = src.format
                if fmt in ("PNG", "JPEG"):
                    decoded = src.convert("RGB")
                    if decoded.size == rgb_image.size and ImageChops.difference(decoded, rgb_image.convert("RGB")).getbbox() is None:
                        data, ext = original_bytes, "png" if fmt == "PNG" else "jpg"
            except Exception:
                data = None
        if data is None:
            buf = io.BytesIO()
            rgb_image.convert("RGB").save(buf, format="PNG")
            data, ext = buf.getvalue(), "png"
            self.reencoded += 1
        else:
            self.kept_original += 1
        name = hashlib.sha256(data).hexdigest()[:16] + "." + ext
        path = os.path.join(self.dir, name)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(data)
        return "images/" + name


def build_record(task, doc, i, prompt, image_paths, mapper):
    rec = {k: None for k in RECORD_FIELDS}
    rec.update(mapper(doc, i))
    rec["images"] = image_paths
    rec["prompt"] = prompt
    if rec.get("question") is None:
        q = doc.get("question", doc.get("Question"))
        rec["question"] = q if isinstance(q, str) else None
    meta = dict(rec.get("meta") or {})
    for k, v in doc.items():
        if k not in meta and _jsonable(v) and not k.startswith("image"):
            meta[k] = v
    rec["meta"] = meta
    if not isinstance(rec["answer"], str):
        raise ValueError(f"{task} doc {i}: answer must be a string, got {rec['answer']!r}")
    return rec


def write_benchmark(out_dir, task, records, max_new_tokens, source, scorer_info, image_stats, scorer_version=SCORER_VERSION):
    scorer, primary, scale, options, _ = scorer_info
    if scorer_version == CLASSIC_VERSION and task in CLASSIC_OVERRIDES:
        scorer, options = CLASSIC_OVERRIDES[task]
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{task}: ids are not unique; fix the id mapping in TASKS")
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    manifest = {
        "format": FORMAT,
        "task": task,
        "source": source,
        "count": len(records),
        "prompt_profile": "lmms-eval/default",
        "generation": {"max_new_tokens": int(max_new_tokens), "greedy": True},
        "scorer": scorer,
        "scorer_version": scorer_version,
        "scorer_options": options,
        "aggregates": [{"name": primary, "fn": "scorer"}],
        "report": {"primary": primary, "scale": scale},
        "sha256_data": hashlib.sha256(data).hexdigest(),
        "images": image_stats,
    }
    with open(os.path.join(out_dir, "data.jsonl"), "wb") as f:
        f.write(data)
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


def _image_columns(task, doc, prompt):
    """Dataset columns that hold doc_to_visual's images, in order (None when not a plain column)."""
    if task.startswith("mmmu"):
        toks = sorted({t.strip("<>").replace(" ", "_") for t in re.findall(r"<image \d+>", prompt)})
        return toks
    if task == "seedbench":
        return ["image[]"]
    if task == "gqa":
        return None  # joined from another config by gqa_process_docs
    return ["image"] if "image" in doc else None


def _original_bytes(raw_row, columns):
    if raw_row is None or columns is None:
        return None
    out = []
    for col in columns:
        if col == "image[]":
            out.extend((x or {}).get("bytes") for x in raw_row.get("image") or [])
        else:
            out.append((raw_row.get(col) or {}).get("bytes"))
    return out


def export_task(task_name, out_dir, limit=None, scorer_version=SCORER_VERSION):
    from lmms_eval.tasks import TaskManager, get_task_dict  # noqa: lmms-eval must be installed
    import datasets

    if task_name not in TASKS:
        raise SystemExit(f"no field mapping for task {task_name!r}; known: {', '.join(sorted(TASKS))}")
    tm = TaskManager(model_name="llava")
    tasks = get_task_dict([task_name], tm)
    task = tasks[task_name] if task_name in tasks else next(iter(tasks.values()))
    docs = task.eval_docs
    split = task.config.test_split if task.has_test_docs() else task.config.validation_split
    raw = None
    try:
        ds = task.dataset[split]
        for col, feat in ds.features.items():
            if isinstance(feat, datasets.Image):
                ds = ds.cast_column(col, datasets.Image(decode=False))
            elif isinstance(feat, datasets.Sequence) and isinstance(feat.feature, datasets.Image):
                ds = ds.cast_column(col, datasets.Sequence(datasets.Image(decode=False)))
        raw = ds
    except Exception as e:  # fall back to PNG re-encoding for every image
        print(f"warning: cannot read original image bytes ({e}); images will be stored as PNG", file=sys.stderr)
    gen = dict(task.config.generation_kwargs or {})
    max_new_tokens = gen.get("max_new_tokens", 1024)  # the llava wrapper's default

    tmp = tempfile.mkdtemp(prefix=".export-", dir=os.path.dirname(os.path.abspath(out_dir)) or ".")
    store = ImageStore(tmp)
    records = []
    n = len(docs) if limit is None else min(limit, len(docs))
    for i in range(n):
        doc = docs[i]
        prompt = task.doc_to_text(doc)
        visuals = task.doc_to_visual(doc) or []
        originals = _original_bytes(raw[i] if raw is not None else None, _image_columns(task_name, doc, prompt))
        if originals is not None and len(originals) != len(visuals):
            originals = None
        paths = [store.put(v, originals[k] if originals else None) for k, v in enumerate(visuals)]
        records.append(build_record(task_name, doc, i, prompt, paths, TASKS[task_name][4]))
    source = {
        "hf_dataset": task.config.dataset_path,
        "config": task.config.dataset_name,
        "split": split,
        "lmms_eval_version": getattr(__import__("lmms_eval"), "__version__", None),
        "lmms_eval_commit": _lmms_eval_commit(),
        "exported_by": "scripts/export_lmms_task.py",
        "limit": limit,
    }
    write_benchmark(tmp, task_name, records, max_new_tokens, source, TASKS[task_name],
                    {"original": store.kept_original, "png_reencoded": store.reencoded}, scorer_version)
    os.chmod(tmp, 0o755)  # mkdtemp makes it private
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    print(f"{task_name}: {len(records)} records, {store.kept_original} original + {store.reencoded} PNG images -> {out_dir}")


def _lmms_eval_commit():
    try:
        import lmms_eval

        root = os.path.dirname(os.path.dirname(os.path.abspath(lmms_eval.__file__)))
        return subprocess.check_output(["git", "-C", root, "rev-parse", "HEAD"], stderr=subprocess.DEVNULL).decode().strip()
    except Exception:
        return None


def self_test(out_dir):
    """Map synthetic MME/POPE/MMBench docs and write a benchmark, without lmms-eval or HF."""
    from PIL import Image

    os.makedirs(out_dir, exist_ok=True)
    jpeg = io.BytesIO()
    img = Image.new("RGB", (16, 12), (10, 120, 200))
    img.save(jpeg, format="JPEG")
    jpeg_bytes = jpeg.getvalue()
    decoded = Image.open(io.BytesIO(jpeg_bytes)).convert("RGB")
    cases = {
        "mme": [({"question_id": "existence/1.png", "category": "existence", "answer": "Yes", "question": "Is there a cat?"},
                 "Is there a cat?\nAnswer the question using a single word or phrase."),
                ({"question_id": "existence/1.png", "category": "existence", "answer": "No", "question": "Is there a dog?"},
                 "Is there a dog?\nAnswer the question using a single word or phrase.")],
        "pope_adv": [({"question_id": 7, "answer": "yes", "category": "adversarial", "question": "Is there a car?"},
                      "Is there a car?\nAnswer the question using a single word or phrase.")],
        "mmbench_en_dev_static": [({"index": 3, "answer": "B", "A": "cat", "B": "dog", "C": "nan", "D": None,
                                    "category": "animals", "l2-category": "perception", "question": "Which?"},
                                   "Which? There are several options:\nA. cat\nB. dog\n\nAnswer with the option's letter from the given choices directly."),
                                  ({"index": 1000003, "answer": "A", "A": "dog", "B": "cat", "C": "nan", "D": None,
                                    "category": "animals", "l2-category": "perception", "question": "Which?"},
                                   "Which? There are several options:\nA. dog\nB. cat\n\nAnswer with the option's letter from the given choices directly.")],
    }
    for task, docs in cases.items():
        bench = os.path.join(out_dir, task)
        os.makedirs(bench, exist_ok=True)
        store = ImageStore(bench)
        records = []
        for i, (doc, prompt) in enumerate(docs):
            paths = [store.put(decoded, jpeg_bytes)]
            records.append(build_record(task, doc, i, prompt, paths, TASKS[task][4]))
        write_benchmark(bench, task, records, 16, {"hf_dataset": "self-test"}, TASKS[task],
                        {"original": store.kept_original, "png_reencoded": store.reencoded})
        assert store.kept_original == len(docs) and store.reencoded == 0, "original JPEG bytes should be kept"
        print(f"self-test: wrote {bench}")
    _self_test_export_task(out_dir, jpeg_bytes)


def _self_test_export_task(out_dir, jpeg_bytes):
    """Run export_task end to end against stand-ins for lmms_eval and datasets (same interfaces
    as lmms-eval 75571cfe / HF datasets use here), then restore the real modules."""
    from PIL import Image

    class FakeImage:
        def __init__(self, decode=True):
            self.decode = decode

    class FakeSequence:
        def __init__(self, feature):
            self.feature = feature

    class FakeDataset:
        def __init__(self, rows, decoded):
            self.rows, self.decoded = rows, decoded
            self.features = {"image": FakeImage(decoded), "question": None}

        def cast_column(self, col, feature):
            return FakeDataset(self.rows, feature.decode)

        def __getitem__(self, i):
            row = dict(self.rows[i])
            row["image"] = Image.open(io.BytesIO(row["image"])) if self.decoded else {"bytes": row["image"], "path": None}
            return row

    rows = [{"question_id": 100 + i, "question": q, "answer": a, "category": "adversarial", "image": jpeg_bytes}
            for i, (q, a) in enumerate([("Is there a car?", "yes"), ("Is there a bus?", "no"), ("Is there a car? ", "yes")])]
    suffix = "\nAnswer the question using a single word or phrase."

    class FakeConfig:
        dataset_path, dataset_name, test_split, validation_split = "lmms-lab-encoder/POPE", "Full", "adversarial", None
        generation_kwargs = {"max_new_tokens": 128, "do_sample": False}

    class FakeTask:
        config = FakeConfig()
        dataset = {"adversarial": FakeDataset(rows, True)}
        eval_docs = [FakeDataset(rows, True)[i] for i in range(len(rows))]

        def has_test_docs(self):
            return True

        def doc_to_text(self, doc):
            return doc["question"].strip() + suffix

        def doc_to_visual(self, doc):
            return [doc["image"].convert("RGB")]

    fake_tasks = types.ModuleType("lmms_eval.tasks")
    fake_tasks.TaskManager = lambda model_name=None: None
    fake_tasks.get_task_dict = lambda names, tm: {names[0]: FakeTask()}
    fake_lmms = types.ModuleType("lmms_eval")
    fake_lmms.__version__, fake_lmms.__file__, fake_lmms.tasks = "fake", os.path.abspath(__file__), fake_tasks
    fake_datasets = types.ModuleType("datasets")
    fake_datasets.Image, fake_datasets.Sequence = FakeImage, FakeSequence
    saved = {k: sys.modules.get(k) for k in ("lmms_eval", "lmms_eval.tasks", "datasets")}
    sys.modules.update({"lmms_eval": fake_lmms, "lmms_eval.tasks": fake_tasks, "datasets": fake_datasets})
    try:
        dest = os.path.join(out_dir, "pope_adv_export")
        export_task("pope_adv", dest, limit=None)
        with open(os.path.join(dest, "manifest.json")) as f:
            manifest = json.load(f)
        assert manifest["count"] == 3 and manifest["generation"]["max_new_tokens"] == 128, manifest
        assert manifest["images"] == {"original": 3, "png_reencoded": 0}, manifest["images"]
        with open(os.path.join(dest, "data.jsonl")) as f:
            recs = [json.loads(line) for line in f]
        assert recs[2]["prompt"] == "Is there a car?" + suffix and recs[1]["answer"] == "no" and recs[0]["subset"] == "adversarial"
        assert len(os.listdir(os.path.join(dest, "images"))) == 1, "one image stored once"
        print(f"self-test: export_task wrote {dest}")
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", help="lmms-eval task name (" + ", ".join(sorted(TASKS)) + ")")
    ap.add_argument("--out", required=True, help="output benchmark directory (replaced atomically)")
    ap.add_argument("--limit", type=int, default=None, help="export only the first N docs (smoke tests)")
    ap.add_argument("--scorers", choices=[SCORER_VERSION, CLASSIC_VERSION], default=SCORER_VERSION,
                    help="scorer behaviour to record: lmms-eval HEAD (default) or classic v0.4 (eval.md §9)")
    ap.add_argument("--self-test", action="store_true", help="write synthetic benchmarks without lmms-eval/HF")
    args = ap.parse_args()
    if args.self_test:
        self_test(args.out)
    elif args.task:
        export_task(args.task, args.out, args.limit, args.scorers)
    else:
        ap.error("give --task or --self-test")


if __name__ == "__main__":
    main()
