"""Hugging Face hub data paths with a network, served from memory: ``datasets.load_dataset`` returns
small seeded ``DatasetDict``s, so ``open_hub`` (split names, the train-split check) and each loader's
column and ClassLabel handling run as they do online; plus a ``trainer=debug`` run per task kind."""

from __future__ import annotations

import json
import random

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from textfixtures import TINY

from seqlab.data.hub import hf_datasets, hub_origin, open_hub
from seqlab.errors import DataError, SeqlabError
from seqlab.train import train

POS, NEG, FILLER = ["good", "great", "fun", "lovely"], ["bad", "awful", "dull", "boring"], ["the", "film", "plot", "a"]
UPOS = ["DET", "NOUN", "VERB", "PUNCT"]


@pytest.fixture
def hub(monkeypatch):
    """``hub["owner/name"] = DatasetDict(...)`` serves it to ``datasets.load_dataset(name)``;
    ``hub[(name, subset)]`` to ``load_dataset(name, subset)``, which without a subset, or with another
    one, fails as ``datasets`` does; ``hub[(name, subset, revision)]`` (subset may be None) to that
    revision, and then another revision of ``name`` fails as an unknown one does. Any other name fails as an unknown hub dataset does. ``hub.calls``: the
    ``(name, subset, revision)`` asked for."""
    datasets = hf_datasets()

    class Hub(dict):
        calls: list[tuple]

    served = Hub()
    served.calls = []

    def load_dataset(path, *args, **kwargs):
        # open_hub asks for the whole DatasetDict by name [and subset] [and revision=]
        assert len(args) <= 1 and set(kwargs) <= {"revision"}, (args, kwargs)
        assert None not in args and kwargs.get("revision", "") is not None, (args, kwargs)  # unset: left out
        subset, revision = (args or (None,))[0], kwargs.get("revision")
        served.calls.append((path, subset, revision))
        pinned = {k[2] for k in served if isinstance(k, tuple) and len(k) == 3 and k[0] == path}
        if revision is not None and pinned and revision not in pinned:
            raise FileNotFoundError(f"Revision '{revision}' doesn't exist for dataset '{path}' on the Hub.")
        for key in ((path, subset, revision), (path, subset) if subset is not None else path):
            if key in served:
                return served[key]
        subsets = sorted({k[1] for k in served if isinstance(k, tuple) and k[0] == path and k[1] is not None})
        if subsets and subset is None:
            raise ValueError(f"Config name is missing.\nPlease pick one among the available configs: {subsets}"
                             f"\nExample of usage:\n\t`load_dataset('{path}', '{subsets[0]}')`")
        if subsets:
            raise ValueError(f"BuilderConfig '{subset}' not found. Available: {subsets}")
        raise FileNotFoundError(f"Dataset '{path}' doesn't exist on the Hub or cannot be accessed.")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return served


def load(compose_cfg, overrides: list[str]):
    """The corpus ``seqlab train <overrides>`` reads (``instantiate(cfg.data)`` as train does); a
    ``SeqlabError`` unwrapped from Hydra's ``InstantiationException``, as the CLI reports it."""
    cfg = compose_cfg(overrides)
    try:
        return instantiate(cfg.data, _convert_="all")
    except InstantiationException as e:
        if isinstance(e.__cause__, SeqlabError):
            raise e.__cause__ from None
        raise


# ----------------------------------------------------------------------------------- tiny data
def reviews(n: int, seed: int, text_col: str = "sentence", label_col: str = "label") -> tuple[dict, list[int]]:
    """``n`` seeded reviews: label 1 (pos) iff a positive word is in it; first row neg, second pos."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        y = i % 2
        words = rng.sample(FILLER, 2) + [rng.choice(POS if y else NEG)]
        rng.shuffle(words)
        texts.append(" ".join(words).capitalize() + ".")
        labels.append(y)
    return {text_col: texts, label_col: labels}, labels


def classification_hub(splits: dict[str, int], text_col: str = "sentence", label_col: str = "label",
                       names=("neg", "pos")):
    datasets = hf_datasets()
    feats = datasets.Features({text_col: datasets.Value("string"), label_col: datasets.ClassLabel(names=list(names))})
    return datasets.DatasetDict({
        split: datasets.Dataset.from_dict(reviews(n, seed, text_col, label_col)[0], features=feats)
        for seed, (split, n) in enumerate(splits.items())
    })


def tagged(n: int, seed: int) -> dict:
    """``n`` seeded sentences DET NOUN VERB [PUNCT] as tag ids into ``UPOS``."""
    rng = random.Random(seed)
    tokens, tags = [], []
    for _ in range(n):
        toks = [rng.choice(["The", "A"]), rng.choice(["cat", "dog", "bird"]), rng.choice(["sat", "ran", "sang"])]
        ids = [0, 1, 2]
        if rng.random() < 0.5:
            toks, ids = toks + ["."], ids + [3]
        tokens.append(toks)
        tags.append(ids)
    return {"tokens": tokens, "upos": tags}


def tagging_hub(splits: dict[str, int]):
    datasets = hf_datasets()
    feats = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                               "upos": datasets.Sequence(datasets.ClassLabel(names=UPOS))})
    return datasets.DatasetDict({split: datasets.Dataset.from_dict(tagged(n, seed), features=feats)
                                 for seed, (split, n) in enumerate(splits.items())})


DE = ["ein hund läuft .", "eine katze schläft .", "zwei männer spielen fußball .", "ein kind lacht ."]
EN = ["a dog runs .", "a cat sleeps .", "two men play soccer .", "a child laughs ."]


def parallel_hub(splits: dict[str, int]):
    """Shaped like bentrevett/multi30k: one string column per language; split k starts at pair k."""
    datasets = hf_datasets()
    out = {}
    for seed, (split, n) in enumerate(splits.items()):
        rows = [(seed + i) % len(DE) for i in range(n)]
        out[split] = datasets.Dataset.from_dict({"en": [EN[i] for i in rows], "de": [DE[i] for i in rows]})
    return datasets.DatasetDict(out)


def wmt_hub(splits: dict[str, int]):
    """Shaped like wmt16/opus_books/iwslt2017: each pair one ``translation`` dict of the languages;
    split k starts at pair k."""
    datasets = hf_datasets()
    feats = datasets.Features({"translation": datasets.Translation(languages=["de", "en"])})
    out = {}
    for seed, (split, n) in enumerate(splits.items()):
        rows = [(seed + i) % len(DE) for i in range(n)]
        out[split] = datasets.Dataset.from_dict({"translation": [{"de": DE[i], "en": EN[i]} for i in rows]},
                                                features=feats)
    return datasets.DatasetDict(out)


def captions_hub(splits: dict[str, int]):
    """``n`` plain 12x12 pictures per split, each with one caption naming its colour."""
    from PIL import Image

    datasets = hf_datasets()
    feats = datasets.Features({"image": datasets.Image(), "captions": datasets.Sequence(datasets.Value("string"))})
    colours = ["red", "blue", "green", "white"]
    return datasets.DatasetDict({
        split: datasets.Dataset.from_dict({"image": [Image.new("RGB", (12, 12), colours[i % 4]) for i in range(n)],
                                           "captions": [[f"a {colours[i % 4]} box"] for i in range(n)]},
                                          features=feats)
        for split, n in splits.items()
    })


# ------------------------------------------------------------------------------------ open_hub
@pytest.mark.unit
@pytest.mark.parametrize("val_name", ["validation", "valid", "dev", "val"])
def test_open_hub_maps_split_names(hub, val_name):
    hub["someone/x"] = classification_hub({"train": 4, val_name: 2, "test": 2, "unsupervised": 2})
    splits = open_hub("someone/x", "data=sst2")
    assert hub.calls == [("someone/x", None, None)]
    assert list(splits) == ["train", "val", "test"]  # "unsupervised" is none of ours
    assert splits["val"]["sentence"] == reviews(2, 1)[0]["sentence"]


@pytest.mark.unit
def test_open_hub_unknown_name_online_asks_if_the_hub_is_reachable(hub, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    with pytest.raises(DataError, match=r"data\.name='someone/nope': cannot load the hub dataset \(FileNotFoundError: "
                                        r".*is the hub reachable\?.*use data=sst2"):
        open_hub("someone/nope", "data=sst2")


@pytest.mark.unit
def test_open_hub_passes_subset_and_revision_only_when_set(hub):
    hub[("wmt16", "de-en")] = hub[("wmt16", "cs-en")] = wmt_hub({"train": 2, "validation": 1})
    splits = open_hub("wmt16", "data=multi30k", subset="de-en", revision="abc123")
    assert hub.calls == [("wmt16", "de-en", "abc123")]
    assert splits["val"]["translation"] == [{"de": DE[1], "en": EN[1]}]
    open_hub("wmt16", "data=multi30k", subset="de-en")
    assert hub.calls[-1] == ("wmt16", "de-en", None)  # the fake asserts that revision=None is not passed


@pytest.mark.unit
def test_open_hub_errors_name_subset_and_revision(hub):
    hub[("wmt16", "de-en")] = hub[("wmt16", "cs-en")] = wmt_hub({"train": 2, "validation": 1})
    with pytest.raises(DataError, match=r"^data\.name='wmt16': cannot load the hub dataset \(ValueError: Config name is "
                                        r"missing.*\['cs-en', 'de-en'\].*; set data\.subset to one of the dataset's "
                                        r"subsets \(configs\)$") as e:
        open_hub("wmt16", "data=multi30k")
    assert "reachable" not in str(e.value)  # not a network problem
    with pytest.raises(DataError, match=r"^task\.label_pretrain\.data\.name='wmt16' task\.label_pretrain\.data\.subset="
                                        r"'de-fr': cannot load .*BuilderConfig 'de-fr' not found.*; "
                                        r"task\.label_pretrain\.data\.subset='de-fr' is not one of the dataset's"):
        open_hub("wmt16", "data=multi30k", subset="de-fr", node="task.label_pretrain.data")
    hub[("someone/x", None, "v1")] = classification_hub({"train": 2, "validation": 2})
    assert open_hub("someone/x", "data=sst2", revision="v1")["train"]["sentence"] == reviews(2, 0)[0]["sentence"]
    with pytest.raises(DataError, match=r"^data\.name='someone/x' data\.revision='v2': cannot load .*Revision 'v2'.*; "
                                        r"check data\.revision \(a branch, tag or commit"):
        open_hub("someone/x", "data=sst2", revision="v2")


# ------------------------------------------------------------------------------ classification
@pytest.mark.unit
def test_hub_classification_sst2_shaped_with_the_preset_defaults(hub, compose_cfg):
    """``data=hub_classification`` as composed: validation -> val, ClassLabel ids -> names, an
    unlabelled (-1) test split, as SST-2's on the hub, left out."""
    dd = classification_hub({"train": 12, "validation": 6})
    datasets = hf_datasets()
    dd["test"] = datasets.Dataset.from_dict({"sentence": ["Who knows ."] * 3, "label": [-1] * 3},
                                            features=dd["train"].features)
    hub["someone/sst"] = dd
    c = load(compose_cfg, ["task=sentiment", "data=hub_classification", "data.name=someone/sst"])
    assert hub.calls == [("someone/sst", None, None)]
    assert set(c.splits) == {"train", "val"}
    assert c.label_order == ["neg", "pos"]
    texts, ids = reviews(6, 1)
    assert c.splits["val"].labels == [["neg", "pos"][i] for i in ids] and c.splits["val"].labels[:2] == ["neg", "pos"]
    # the preset's word tokenizer, lower-cased
    assert c.splits["val"].tokens[0] == texts["sentence"][0].lower().replace(".", " .").split()
    assert c.splits["val"].where[1] == "someone/sst[val] row 1"


@pytest.mark.unit
def test_hub_classification_column_options_and_carved_val(hub, compose_cfg):
    """IMDB-shaped (train and test, other column names): data.text_column / data.label_column and
    data.val_fraction; the ClassLabel's own order, not the sorted names, orders the labels."""
    hub["someone/imdb"] = classification_hub({"train": 20, "test": 4}, text_col="review", label_col="stars",
                                             names=("pos", "neg"))
    c = load(compose_cfg, ["task=sentiment", "data=hub_classification", "data.name=someone/imdb",
                       "data.text_column=review", "data.label_column=stars", "data.val_fraction=0.25"])
    assert set(c.splits) == {"train", "val", "test"}
    assert len(c.splits["train"].tokens) == 15 and len(c.splits["val"].tokens) == 5
    assert c.label_order == ["pos", "neg"]
    assert c.splits["test"].labels == [["pos", "neg"][i] for i in reviews(4, 1)[1]]
    with pytest.raises(DataError, match=r"data\.name='someone/imdb': the dataset has no validation split.*"
                                        r"set data\.val_fraction"):
        load(compose_cfg, ["task=sentiment", "data=hub_classification", "data.name=someone/imdb",
                                 "data.text_column=review", "data.label_column=stars"])


@pytest.mark.unit
def test_hub_classification_errors_name_the_keys(hub):
    from seqlab.data.classification import load_classification

    dd = classification_hub({"validation": 3, "test": 3})
    hub["someone/x"] = dd
    with pytest.raises(DataError, match=r"data\.name='someone/x': the dataset has no train split "
                                        r"\(splits: validation, test\)"):
        load_classification(format="hub", name="someone/x")
    hub["someone/x"] = classification_hub({"train": 3, "validation": 3}, label_col="stars")
    with pytest.raises(DataError, match=r"data\.name='someone/x'\[train\]: no column 'label' .*'stars'.*"
                                        r"set data\.label_column"):
        load_classification(format="hub", name="someone/x")
    with pytest.raises(DataError, match=r"no column 'text' .*set data\.text_column"):
        load_classification(format="hub", name="someone/x", text_column="text", label_column="stars")
    with pytest.raises(DataError, match=r"data\.name: a hub dataset name is required"):
        load_classification(format="hub")


@pytest.mark.unit
def test_hub_classification_unlabelled_row_among_labelled_is_an_error(hub):
    """A -1 (no label) among ClassLabel ids must not become the last class name."""
    from seqlab.data.classification import load_classification

    dd = classification_hub({"train": 4, "validation": 2})
    datasets = hf_datasets()
    rows = dd["train"].to_dict()
    rows["label"][2] = -1
    dd["train"] = datasets.Dataset.from_dict(rows, features=dd["train"].features)
    hub["someone/x"] = dd
    with pytest.raises(DataError, match=r"someone/x\[train\] row 2: label -1 is not a class id.*data\.label_column"):
        load_classification(format="hub", name="someone/x")


# ------------------------------------------------------------------------------------- tagging
@pytest.mark.unit
def test_hub_tagging_dev_split_and_class_label_tags(hub, compose_cfg):
    hub["someone/pos"] = tagging_hub({"train": 10, "dev": 4, "test": 3})
    c = load(compose_cfg, ["task=tagging", "data=hub_tagging", "data.name=someone/pos"])
    assert hub.calls == [("someone/pos", None, None)]
    assert set(c.splits) == {"train", "val", "test"} and c.tag_column == "upos"
    dev = tagged(4, 1)
    assert c.splits["val"].tokens == dev["tokens"]
    assert c.splits["val"].tags == [[UPOS[t] for t in ids] for ids in dev["upos"]]
    assert {t for s in c.splits["train"].tags for t in s} <= set(UPOS)
    hub["someone/nodev"] = tagging_hub({"dev": 4})
    with pytest.raises(DataError, match=r"data\.name='someone/nodev': the dataset has no train split"):
        load(compose_cfg, ["task=tagging", "data=hub_tagging", "data.name=someone/nodev"])
    with pytest.raises(DataError, match=r"no column 'ner_tags'.*set data\.tag_column"):
        load(compose_cfg, ["task=tagging", "data=hub_tagging", "data.name=someone/pos",
                                 "data.tag_column=ner_tags"])


# --------------------------------------------------------------------------------- translation
@pytest.mark.unit
def test_hub_translation_reads_language_columns(hub, compose_cfg):
    hub["someone/m30k"] = parallel_hub({"train": 8, "validation": 3, "test": 2})
    c = load(compose_cfg, ["data=hub", "data.name=someone/m30k"])
    assert set(c.splits) == {"train", "val", "test"}
    assert c.splits["val"]["src"] == [DE[(1 + i) % 4] for i in range(3)]  # de -> en by default
    assert c.splits["val"]["tgt"] == [EN[(1 + i) % 4] for i in range(3)]
    assert c.tokenize("Ein Hund.") == ["ein", "hund", "."]  # hub.yaml: word tokenizer, lower-cased
    rev = load(compose_cfg, ["data=hub", "data.name=someone/m30k", "data.src_lang=en", "data.tgt_lang=de"])
    assert rev.splits["test"]["src"] == [EN[2], EN[3]] and rev.splits["test"]["tgt"] == [DE[2], DE[3]]
    assert rev.fingerprint != c.fingerprint
    with pytest.raises(DataError, match=r"data\.name='someone/m30k'.*no column 'fr'.*set data\.tgt_column"):
        load(compose_cfg, ["data=hub", "data.name=someone/m30k", "data.tgt_lang=fr"])


@pytest.mark.unit
def test_hub_translation_reads_a_wmt_style_translation_column(hub, compose_cfg):
    """wmt16-shaped: a subset to name, pairs as ``translation`` dicts, read by data.src_lang/tgt_lang."""
    hub[("wmt16", "de-en")] = wmt_hub({"train": 6, "validation": 2, "test": 3})
    base = ["data=hub", "data.name=wmt16", "data.subset=de-en"]
    c = load(compose_cfg, [*base, "data.revision=v1"])
    assert hub.calls == [("wmt16", "de-en", "v1")]
    assert set(c.splits) == {"train", "val", "test"}
    assert c.splits["val"]["src"] == [DE[1], DE[2]] and c.splits["val"]["tgt"] == [EN[1], EN[2]]
    rev = load(compose_cfg, [*base, "data.src_lang=en", "data.tgt_lang=de"])
    assert rev.splits["test"]["src"] == [EN[2], EN[3], EN[0]] and rev.splits["test"]["tgt"] == [DE[2], DE[3], DE[0]]
    named = load(compose_cfg, [*base, "data.src_column=translation", "data.tgt_column=translation"])
    assert named.splits["train"]["src"] == c.splits["train"]["src"] == [DE[i % 4] for i in range(6)]
    with pytest.raises(DataError, match=r"^data\.name='wmt16': split 'train': column 'translation' holds no 'fr' "
                                        r"text \(languages: de, en\); set data\.tgt_lang$"):
        load(compose_cfg, [*base, "data.tgt_lang=fr"])
    with pytest.raises(DataError, match=r"split 'train' has no column 'text' \(\['translation'\]\); "
                                        r"set data\.src_column"):  # a column the user named: no fallback
        load(compose_cfg, [*base, "data.src_column=text"])
    with pytest.raises(DataError, match=r"^data\.name='wmt16': cannot load .*Config name is missing.*set data\.subset"):
        load(compose_cfg, ["data=hub", "data.name=wmt16"])


# ------------------------------------------------------------------------------------ captions
@pytest.mark.unit
def test_hub_captions_valid_split_images_and_caption_lists(hub, compose_cfg):
    """``data=hub_captions``: valid -> val, images centre-cropped to data.image_size, caption lists
    kept (blank ones dropped); rows without an image or a caption left out."""
    from PIL import Image

    datasets = hf_datasets()
    feats = datasets.Features({"image": datasets.Image(), "captions": datasets.Sequence(datasets.Value("string"))})

    def im(colour, w=24, h=16):
        return Image.new("RGB", (w, h), colour)

    hub["someone/caps"] = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"image": [im("red"), im("blue"), None, im("green")],
                                             "captions": [["a red box", ""], ["a blue box"], ["lost"], []]},
                                            features=feats),
        "valid": datasets.Dataset.from_dict({"image": [im("white", 16, 24)], "captions": [["a white box", "white"]]},
                                            features=feats),
    })
    c = load(compose_cfg, ["task=captioning", "data=hub_captions", "data.name=someone/caps", "data.image_size=8"])
    assert set(c.splits) == {"train", "val"}
    assert c.splits["train"].captions == [["a red box"], ["a blue box"]]
    assert c.splits["train"].names == ["train_0", "train_1"]
    assert tuple(c.splits["train"].images.shape) == (2, 3, 8, 8)
    assert c.splits["train"].images[0, :, 4, 4].tolist() == [255, 0, 0]
    assert c.splits["val"].captions == [["a white box", "white"]] and c.splits["val"].images[0].min() == 255
    with pytest.raises(DataError, match=r"data\.name='someone/caps'.*no column 'caption_0'.*set data\.caption_column"):
        load(compose_cfg, ["task=captioning", "data=hub_captions", "data.name=someone/caps",
                                 "data.caption_column=caption_0"])


# ------------------------------------------------------------------- subset, revision, cache key
PRESETS = {  # data preset -> (task, a small DatasetDict it reads, more overrides)
    "hub": ("translation", lambda: parallel_hub({"train": 4, "validation": 2}), []),
    "hub_classification": ("sentiment", lambda: classification_hub({"train": 4, "validation": 2}), []),
    "hub_tagging": ("tagging", lambda: tagging_hub({"train": 4, "validation": 2}), []),
    "hub_captions": ("captioning", lambda: captions_hub({"train": 2, "validation": 1}), ["data.image_size=8"]),
}


@pytest.mark.unit
@pytest.mark.parametrize("preset", list(PRESETS))
def test_hub_subset_and_revision_reach_load_dataset_and_the_cache_key(hub, compose_cfg, preset):
    """Each hub preset hands data.subset / data.revision to ``load_dataset`` and into the corpus
    fingerprint (the key of the tokenised and image-feature caches); unset, the key is the old one."""
    task, make, extra = PRESETS[preset]
    hub["someone/x"] = hub[("someone/x", "a")] = hub[("someone/x", "b")] = make()
    asked = [(None, None), ("a", None), ("b", None), ("a", "v1"), ("a", "v2"), (None, "v1")]
    fingerprints = []
    for subset, revision in asked:
        overrides = [f"task={task}", f"data={preset}", "data.name=someone/x", *extra]
        overrides += [f"data.subset={subset}"] * (subset is not None) + [f"data.revision={revision}"] * (revision is not None)
        fingerprints.append(load(compose_cfg, overrides).fingerprint)
    assert hub.calls == [("someone/x", s, r) for s, r in asked]
    assert len(set(fingerprints)) == len(asked)
    assert hub_origin("someone/x") == "someone/x"  # neither set: caches written before these options still hit


@pytest.mark.unit
def test_hub_revision_never_reuses_a_stale_token_cache(hub, compose_cfg, tmp_path):
    from seqlab.tasks.translation import TokenCache

    hub[("wmt16", "de-en", "v1")] = wmt_hub({"train": 4, "validation": 2})
    hub[("wmt16", "de-en", "v2")] = wmt_hub({"validation": 2, "train": 4})  # train starts at pair 1
    cache = TokenCache(tmp_path)
    v1, v2 = (cache.load_or_build(load(compose_cfg, ["data=hub", "data.name=wmt16", "data.subset=de-en",
                                                     f"data.revision={r}"])) for r in ("v1", "v2"))
    assert v1["train"][0][0] == DE[0].split() and v2["train"][0][0] == DE[1].split()
    assert v1["val"][1] == [EN[1].split(), EN[2].split()] and v2["val"][1] == [EN[0].split(), EN[1].split()]
    assert len(list((tmp_path / "tokenized").glob("*.json"))) == 2


# ---------------------------------------------------------------------------- no validation split
@pytest.mark.unit
@pytest.mark.parametrize("preset", list(PRESETS))
def test_hub_without_a_validation_split_says_what_to_do(hub, compose_cfg, preset):
    """Not data.val.path / data.val.captions (files): the split names read as validation, and
    data.val_fraction where the task can carve one."""
    task, make, extra = PRESETS[preset]
    dd = make()
    dd["test"] = dd.pop("validation")
    hub["someone/x"] = dd
    todo = {"hub_captions": "captioning needs one: use a dataset that has one, or the bundled sample"
            }.get(preset, "set data.val_fraction to carve one from train")
    with pytest.raises(DataError) as e:
        load(compose_cfg, [f"task={task}", f"data={preset}", "data.name=someone/x", *extra])
    assert str(e.value).startswith("data.name='someone/x': the dataset has no validation split (splits: train, test; "
                                   f"read as validation: validation, valid, dev, val); {todo}")
    assert "data.val." not in str(e.value)
    if preset != "hub_captions":
        c = load(compose_cfg, [f"task={task}", f"data={preset}", "data.name=someone/x", "data.val_fraction=0.25"])
        assert set(c.splits) == {"train", "val", "test"} and len(c.splits["val"]) == 1


@pytest.mark.unit
def test_hub_translation_carves_validation_from_a_train_only_dataset(hub, compose_cfg):
    """opus_books-shaped (one ``translation`` column, a train split only): data.val_fraction carves a
    seeded validation split out of train, the same pairs each time, disjoint from training, and the
    cache key follows the fraction and the seed."""
    hub[("opus_books", "de-en")] = wmt_hub({"train": 40})
    base = ["data=hub", "data.name=opus_books", "data.subset=de-en", "data.val_fraction=0.1"]
    c = load(compose_cfg, base)
    assert set(c.splits) == {"train", "val"} and (len(c.splits["train"]), len(c.splits["val"])) == (36, 4)
    pairs = {split: list(zip(c.splits[split]["src"], c.splits[split]["tgt"], strict=True)) for split in ("train", "val")}
    assert all(p in set(zip(DE, EN, strict=True)) for p in pairs["val"])  # pairs stay pairs
    assert sorted(pairs["train"] + pairs["val"]) == sorted((DE[i % 4], EN[i % 4]) for i in range(40))
    again, other_seed = load(compose_cfg, base), load(compose_cfg, [*base, "data.split_seed=7"])
    assert list(again.splits["val"]["src"]) == list(c.splits["val"]["src"]) and again.fingerprint == c.fingerprint
    assert len({c.fingerprint, other_seed.fingerprint,
                load(compose_cfg, [*base, "data.val_fraction=0.2"]).fingerprint}) == 3
    with pytest.raises(DataError, match=r"^data\.val_fraction=1\.0: leaves no training examples \(of 40\)$"):
        load(compose_cfg, [*base[:-1], "data.val_fraction=1.0"])
    hub[("opus_books", "de-en")] = wmt_hub({"train": 40, "validation": 4})
    with pytest.raises(DataError, match=r"^data\.val_fraction > 0 carves validation out of train, but "
                                        r"data\.name='opus_books' has a validation split; set data\.val_fraction=0"):
        load(compose_cfg, base)


@pytest.mark.unit
def test_hub_validation_split_and_val_fraction_wording(hub, compose_cfg):
    datasets = hf_datasets()
    dd = classification_hub({"train": 8, "validation": 2})
    hub["someone/x"] = dd
    with pytest.raises(DataError, match=r"^data\.val_fraction > 0 carves validation out of train, but "
                                        r"data\.name='someone/x' has a validation split; set data\.val_fraction=0"):
        load(compose_cfg, ["task=sentiment", "data=hub_classification", "data.name=someone/x", "data.val_fraction=0.25"])
    dd["validation"] = datasets.Dataset.from_dict({"sentence": ["Who knows ."] * 2, "label": [-1] * 2},
                                                  features=dd["train"].features)  # unlabelled, as SST-2's test
    with pytest.raises(DataError, match=r"^data\.name='someone/x': no labelled validation split; "
                                        r"set data\.val_fraction to carve one from train$"):
        load(compose_cfg, ["task=sentiment", "data=hub_classification", "data.name=someone/x"])
    caps = captions_hub({"train": 2, "validation": 1})
    caps["validation"] = caps["validation"].map(lambda row: {"captions": []})
    hub["someone/caps"] = caps
    with pytest.raises(DataError, match=r"^data\.name='someone/caps': split 'val' has no row with both an image "
                                        r"and a caption"):
        load(compose_cfg, ["task=captioning", "data=hub_captions", "data.name=someone/caps", "data.image_size=8"])


# ------------------------------------------------------------------------ debug runs, end to end
def _check_run(run, metrics: dict, monitor: str) -> dict:
    assert monitor in metrics and f"best/{monitor}" in metrics
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "checkpoints" / "last.pt").is_file()
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["monitor"] == monitor and summary["metrics"][monitor] == metrics[monitor]
    return json.loads((run / "task.json").read_text())


@pytest.mark.smoke
@pytest.mark.usefixtures("one_thread")
def test_debug_run_sentiment_on_a_hub_dataset(hub, compose_cfg, tmp_path):
    hub["someone/x"] = classification_hub({"train": 32, "validation": 8})
    cfg = compose_cfg(["task=sentiment", "data=hub_classification", "data.name=someone/x", "trainer=debug",
                       "trainer.max_steps=4", "trainer.progress_bar=false", "model=gru", *TINY])
    metrics = train(cfg, tmp_path / "run")
    assert 0 <= metrics["val/acc"] <= 100
    assert _check_run(tmp_path / "run", metrics, "val/acc")["labels"] == ["neg", "pos"]


@pytest.mark.smoke
@pytest.mark.usefixtures("one_thread")
def test_debug_run_tagging_on_a_hub_dataset(hub, compose_cfg, tmp_path):
    hub["someone/pos"] = tagging_hub({"train": 24, "dev": 6})
    cfg = compose_cfg(["task=tagging", "data=hub_tagging", "data.name=someone/pos", "trainer=debug",
                       "trainer.max_steps=4", "trainer.progress_bar=false", "model=gru", "task.char_features=none",
                       *TINY])
    metrics = train(cfg, tmp_path / "run")
    assert 0 <= metrics["val/acc"] <= 100
    state = _check_run(tmp_path / "run", metrics, "val/acc")
    assert sorted(state["tags"]) == sorted(UPOS) and state["tag_column"] == "upos"


@pytest.mark.smoke
@pytest.mark.usefixtures("one_thread")
def test_debug_run_translation_on_a_hub_dataset(hub, compose_cfg, tmp_path):
    hub["someone/m30k"] = parallel_hub({"train": 16, "validation": 4})
    cfg = compose_cfg(["data=hub", "data.name=someone/m30k", "trainer=debug", "trainer.max_steps=3",
                       "trainer.limit_eval=4", "trainer.progress_bar=false", "model=gru", "model.emb_size=16",
                       "model.hidden_size=16", "task.val_decode.max_len=8", "task.num_samples=1"])
    metrics = train(cfg, tmp_path / "run")
    _check_run(tmp_path / "run", metrics, "val/bleu")
    assert "hund" in json.loads((tmp_path / "run" / "task.json").read_text())["src_vocab"]
