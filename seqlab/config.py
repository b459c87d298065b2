"""Typed config schemas (Hydra structured configs) and the ``seqlab.asset`` resolver.

Every YAML file in ``conf/`` starts from one of these schemas through its defaults list, so a
misspelt key (``model.hiden_size=3``) or value (``model.cell=gur``) fails at compose time with
Hydra's own message. Modules never receive a DictConfig: ``to_spec`` turns a node into the plain
dataclass instance below.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from seqlab.errors import ConfigError

ASSETS = Path(__file__).resolve().parent / "assets"


def plain(x: Any) -> Any:
    """An enum member's value (``Cell.lstm`` -> ``"lstm"``); anything else as it is."""
    return getattr(x, "value", x)


def asset_path(relative: str) -> str:
    """Absolute path of a file bundled with the package (``${seqlab.asset:multi30k/...}``)."""
    return str(ASSETS / relative)


if not OmegaConf.has_resolver("seqlab.asset"):
    OmegaConf.register_new_resolver("seqlab.asset", asset_path)


# ----------------------------------------------------------------------------------------- model
class Cell(str, Enum):
    rnn = "rnn"
    gru = "gru"
    lstm = "lstm"


class Attention(str, Enum):
    none = "none"
    additive = "additive"
    dot = "dot"
    general = "general"


class AttentionStyle(str, Enum):
    """Where attention sits in the decoder.

    ``luong``: score with the *new* decoder state, attentional vector ``tanh(W[h; c])`` feeds the
    output layer (and the next step's input when ``input_feeding``): JoeyNMT/OpenNMT-py.
    ``bahdanau``: score with the *previous* state, the context enters the recurrence.
    """

    luong = "luong"
    bahdanau = "bahdanau"


class DecoderInit(str, Enum):
    copy = "copy"  # encoder's final state copied into the decoder (Sutskever et al. 2014)
    bridge = "bridge"  # tanh(W h_enc): a learned projection of it
    zeros = "zeros"


@dataclass
class ModelConfig:
    """Architecture knobs shared by every task; the task decides which network they build."""

    name: str = "lstm_attn"
    cell: Cell = Cell.lstm
    emb_size: int = 256
    hidden_size: int = 512  # encoder state size (split over directions) and decoder size
    num_layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.3
    attention: Attention = Attention.additive
    attention_style: AttentionStyle = AttentionStyle.luong
    input_feeding: bool = True
    decoder_init: DecoderInit = DecoderInit.bridge
    # Cho et al. 2014: a fixed context vector (the encoder summary) enters every decoder step,
    # and the initial state is a separate projection of it. Only with attention=none.
    fixed_context: bool = False
    tie_embeddings: bool = False
    init_range: float = 0.1  # uniform(-r, r) init (OpenNMT-py); 0 keeps PyTorch's defaults


# ------------------------------------------------------------------------------------------- data
class TextFormat(str, Enum):
    text = "text"  # one sentence per line, one file per side
    tsv = "tsv"
    csv = "csv"
    jsonl = "jsonl"
    auto = "auto"  # a table whose file name says which: .tsv, .csv, .jsonl or .json (.gz too)
    hub = "hub"


class Tokenizer(str, Enum):
    space = "space"  # pre-tokenised text: split on whitespace
    word = "word"  # words and punctuation (regex)
    ptb = "ptb"  # Penn-Treebank-like words, as SST-2's: "didn't" -> "did n't" (HTML line breaks removed)
    char = "char"


@dataclass
class SplitFiles:
    src: str | None = None  # format=text: source-side file
    tgt: str | None = None  # format=text: target-side file
    path: str | None = None  # format=tsv|csv|jsonl: one table with both columns


@dataclass
class ParallelDataConfig:
    _target_: str = "seqlab.data.text.load_parallel"
    format: TextFormat = TextFormat.text
    name: str | None = None  # hub dataset name (format=hub)
    subset: str | None = None  # format=hub: the dataset's subset (config name), e.g. wmt16's de-en
    revision: str | None = None  # format=hub: a branch, tag or commit of the dataset's repository
    src_lang: str = "de"
    tgt_lang: str = "en"
    src_column: str | None = None  # defaults to src_lang
    tgt_column: str | None = None  # defaults to tgt_lang
    train: SplitFiles = field(default_factory=SplitFiles)
    val: SplitFiles = field(default_factory=SplitFiles)
    test: SplitFiles = field(default_factory=SplitFiles)
    tokenizer: Tokenizer = Tokenizer.space
    lowercase: bool = False
    val_fraction: float = 0.0  # >0 and no val split: carve a seeded validation split from train
    split_seed: int = 1234


# ------------------------------------------------------------------------------------------- task
class Strategy(str, Enum):
    greedy = "greedy"
    beam = "beam"
    sample = "sample"
    auto = "auto"  # beam search when a beam_size above 1 is given, else greedy (seqlab eval/predict)


DEFAULT_BEAM_SIZE = 5


class Quantize(str, Enum):
    none = "none"
    int8 = "int8"  # the decoder step's products in int8 (dynamic quantization; CPU only)


@dataclass
class DecodeConfig:
    strategy: Strategy = Strategy.greedy
    beam_size: int | None = None  # None: 5 (DEFAULT_BEAM_SIZE)
    length_penalty: float = 1.0  # GNMT alpha; 0 = raw log-probability
    max_len: int = 100
    temperature: float = 1.0  # strategy=sample
    top_k: int = 0  # strategy=sample; 0 = full distribution
    batch_size: int = 64
    workers: int = 0  # CPU: batches decoded side by side in this many threads (0: one per core thread)
    # int8: the decoder step's matrix products (recurrence, attentional layer, output layer) in
    # int8 with per-row scales, the rest in fp32 (models.packed.Int8); CPU only
    quantize: Quantize = Quantize.none

    def __post_init__(self) -> None:
        """``auto`` becomes beam search when a beam size above 1 was given, else greedy (so that
        ``decode.beam_size=5`` alone means a beam of 5, as in JoeyNMT); an unset beam size is 5."""
        if getattr(self.strategy, "value", self.strategy) == "auto":
            self.strategy = Strategy.beam if (self.beam_size or 1) > 1 else Strategy.greedy
        if self.beam_size is None:
            self.beam_size = DEFAULT_BEAM_SIZE

    @property
    def rows_per_input(self) -> int:
        """Hypotheses decoded side by side for each input: the beam size for beam search, else 1."""
        return self.beam_size if getattr(self.strategy, "value", self.strategy) == "beam" else 1

    @property
    def int8(self) -> bool:
        return getattr(self.quantize, "value", self.quantize) == "int8"


def decode_settings(node: Any) -> dict[str, Any]:
    """``seqlab eval``/``predict``'s ``decode`` block checked against ``DecodeConfig`` (a misspelt
    value names its key and the choices), with ``strategy=auto`` and an unset beam size resolved,
    as a plain dict."""
    try:
        decode = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DecodeConfig), node))
    except OmegaConfBaseException as e:
        msg = str(getattr(e, "msg", e)).split("\n")[0]
        raise ConfigError(f"decode.{e.full_key}: {msg}") from None
    return {f.name: getattr(getattr(decode, f.name), "value", getattr(decode, f.name)) for f in fields(decode)}


@dataclass
class VocabConfig:
    min_freq: int = 2
    max_size: int = 50000
    shared: bool = False  # one vocabulary for source and target


class SubwordKind(str, Enum):
    none = "none"  # words are the units
    bpe = "bpe"  # byte-pair encoding (SentencePiece)
    unigram = "unigram"  # a unigram language model's pieces (SentencePiece)


@dataclass
class SubwordConfig:
    """Subword units learnt from the training split (seqlab/data/subword.py)."""

    kind: SubwordKind = SubwordKind.none
    vocab_size: int = 8000  # pieces per model (fewer when the text supports fewer)
    shared: bool = True  # one model for source and target text


@dataclass
class TranslationTaskConfig:
    _target_: str = "seqlab.tasks.translation.TranslationTask"
    _partial_: bool = True
    name: str = "translation"
    monitor: str = "val/bleu"
    monitor_mode: str = "max"
    vocab: VocabConfig = field(default_factory=VocabConfig)
    subword: SubwordConfig = field(default_factory=SubwordConfig)
    teacher_forcing: float = 1.0
    label_smoothing: float = 0.0
    max_src_len: int = 100  # longer training pairs are dropped (and counted); units: pieces with subword
    max_tgt_len: int = 100
    val_decode: DecodeConfig = field(default_factory=DecodeConfig)
    num_samples: int = 3  # validation sentences shown as text and attention maps
    loss_norm: str = "sentences"  # sentences | tokens: what the summed loss is divided by


# -------------------------------------------------------------------------------------- optimizer
@dataclass
class AdamConfig:
    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    fused: bool | None = None  # one fused kernel for the update (CPU and CUDA; ~5x less time than the loop)


@dataclass
class SchedulerConfig:
    """``_target_`` builds the scheduler from the optimizer; ``interval`` says when it steps."""

    _target_: str | None = None
    _partial_: bool = True
    interval: str = "step"  # step | val ("val" steps after each validation, with the metric)
    kwargs: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------- trainer
class Precision(str, Enum):
    auto = "auto"  # fp16 autocast on CUDA, fp32 on CPU
    fast = "fast"  # bf16 autocast where it beats fp32 (AMX, or measured at start-up; a bf16 GPU), else as auto
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


@dataclass
class TrainerConfig:
    max_epochs: int = 10
    max_steps: int = -1  # -1: no limit
    max_minutes: float = 0.0  # stop (after validating) once training has run this long; 0: no limit
    batch_size: int = 64  # sentences per update
    bucket: bool = True  # length-sorted pools: little padding, same order given the seed
    bucket_pool: int = 50  # pool = bucket_pool * batch_size examples sorted by length
    grad_clip: float = 1.0  # max gradient norm; 0 disables (the norm is logged either way)
    val_every_steps: int = 0  # 0: validate at the end of each epoch
    log_every: int = 25
    early_stopping_patience: int = 0  # validations without improvement; 0 disables
    # > 0 (e.g. 0.999): validate, checkpoint and predict with an exponential moving average of the
    # weights, updated after every step (seqlab/training/ema.py); 0 disables
    ema_decay: float = 0.0
    precision: Precision = Precision.auto
    device: str = "auto"
    progress_bar: bool = True
    save_last_every_steps: int = 0  # also write last.pt every N steps (0: at validations only)
    keep_every_validation: bool = False  # also keep checkpoints/step_<N>.pt at each validation
    num_threads: int = 0  # torch intra-op threads; 0 keeps PyTorch's choice
    # Linux (glibc): large tensors come from the heap and freed memory is kept for the next step
    # instead of being unmapped and page-faulted in again (seqlab.runtime.reuse_freed_memory)
    reuse_freed_memory: bool = True
    limit_train: int | None = None  # train on the first N examples only (debug runs)
    limit_eval: int | None = None  # evaluate on the first N examples of a split only


@dataclass
class LoggerConfig:
    tensorboard: bool = True
    flush_secs: int = 30



# ---------------------------------------------------------------------- vision tasks (issue 5)
class Backbone(str, Enum):
    small = "small"  # a few conv layers defined in seqlab (fast, trained from scratch)
    resnet18 = "resnet18"
    resnet34 = "resnet34"
    resnet50 = "resnet50"


class BadImage(str, Enum):
    skip = "skip"  # leave the image (and its captions) out, count it in the log
    error = "error"  # stop with a message naming the file


@dataclass
class ImageEncoderConfig:
    """The CNN that turns an image (or a video frame) into a grid of feature vectors."""

    backbone: Backbone = Backbone.small
    # null: random init; a torchvision weights name (IMAGENET1K_V1, DEFAULT: needs a network or the
    # torch hub cache) or the path of a local state_dict file (.pth/.pt)
    weights: str | None = None
    trainable: bool = True  # false: frozen; its features are computed once and cached on disk
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])  # backbone=small only
    coords: bool = False  # backbone=small only: x/y coordinate input channels (CoordConv)
    feature_batch_size: int = 64  # images per forward pass when filling the feature cache


@dataclass
class CaptioningTaskConfig:
    _target_: str = "seqlab.tasks.captioning.CaptioningTask"
    _partial_: bool = True
    name: str = "captioning"
    monitor: str = "val/bleu"
    monitor_mode: str = "max"
    encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    vocab: VocabConfig = field(default_factory=lambda: VocabConfig(min_freq=1))
    # models without attention: the global image vector enters every decoder step (W_ih v) as
    # well as the initial state; false: the initial state only (Show and Tell)
    global_every_step: bool = True
    # a learned row + column embedding added to every grid cell's annotation vector, so that an
    # attention context says where as well as what
    position_embedding: bool = True
    attention_reg: float = 1.0  # doubly stochastic attention (Xu et al. 2015, lambda); 0 disables
    max_len: int = 40  # longer training captions are dropped (and counted)
    val_decode: DecodeConfig = field(default_factory=lambda: DecodeConfig(max_len=40))
    num_samples: int = 3  # validation images shown in TensorBoard with captions and overlays


class FramePool(str, Enum):
    flatten = "flatten"  # the whole feature grid, projected: keeps *where* things are
    mean = "mean"  # global average: *what* only


@dataclass
class FramesTaskConfig:
    _target_: str = "seqlab.tasks.frames.FramesTask"
    _partial_: bool = True
    name: str = "frames"
    monitor: str = "val/frame_acc"
    monitor_mode: str = "max"
    encoder: ImageEncoderConfig = field(default_factory=lambda: ImageEncoderConfig(channels=[16, 32, 64]))
    pool: FramePool = FramePool.flatten
    eval_batch_size: int = 64
    num_samples: int = 3


@dataclass
class CaptionSplitFiles:
    captions: str | None = None  # COCO JSON / JSONL, or a Flickr token file
    images: str | None = None  # image folder (default: data.root, or the captions file's folder)
    image_list: str | None = None  # Flickr: a file naming this split's images (one per line)


class CaptionFormat(str, Enum):
    coco = "coco"  # COCO captions JSON, or JSONL with {"image", "captions"} per line
    flickr = "flickr"  # Flickr8k/30k token file: "<image>#<k>\t<caption>" per line
    hub = "hub"


@dataclass
class CaptionDataConfig:
    _target_: str = "seqlab.data.images.load_captions"
    format: CaptionFormat = CaptionFormat.coco
    name: str | None = None  # hub dataset name (format=hub)
    subset: str | None = None  # format=hub: the dataset's subset (config name), if it has several
    revision: str | None = None  # format=hub: a branch, tag or commit of the dataset's repository
    image_column: str = "image"  # format=hub
    caption_column: str = "captions"  # format=hub
    root: str | None = None  # relative image paths are resolved against it
    train: CaptionSplitFiles = field(default_factory=CaptionSplitFiles)
    val: CaptionSplitFiles = field(default_factory=CaptionSplitFiles)
    test: CaptionSplitFiles = field(default_factory=CaptionSplitFiles)
    image_size: int = 224  # shorter side resized to this, then centre-cropped square
    tokenizer: Tokenizer = Tokenizer.word
    lowercase: bool = True
    on_bad_image: BadImage = BadImage.skip


@dataclass
class SyntheticCaptionDataConfig:
    _target_: str = "seqlab.data.synthetic.synthetic_captions"
    seed: int = 0
    n_train: int = 6000
    n_val: int = 500
    n_test: int = 500
    image_size: int = 64
    min_object: int = 14  # object size range in pixels
    max_object: int = 20


@dataclass
class SyntheticFramesDataConfig:
    _target_: str = "seqlab.data.synthetic.synthetic_frames"
    seed: int = 0
    n_train: int = 3000
    n_val: int = 300
    n_test: int = 300
    num_frames: int = 16
    image_size: int = 32
    object_size: int = 6
    speed: int = 2  # pixels per frame
    turn_prob: float = 0.25  # chance of a new direction at each frame
    hidden_after: int = 0  # long-range variant: the object vanishes after this frame (0: never)


@dataclass
class FrameSplitFiles:
    root: str | None = None  # one sub-folder of frame images per clip (sorted by file name)
    labels: str | None = None  # "<clip><TAB><label per frame, space separated>" per line


@dataclass
class FrameFolderDataConfig:
    _target_: str = "seqlab.data.images.load_frame_folders"
    train: FrameSplitFiles = field(default_factory=FrameSplitFiles)
    val: FrameSplitFiles = field(default_factory=FrameSplitFiles)
    test: FrameSplitFiles = field(default_factory=FrameSplitFiles)
    image_size: int = 64
    max_frames: int = 0  # keep the first N frames of each clip (0: all)
    on_bad_image: BadImage = BadImage.skip


def register_schemas() -> None:
    """Store the schemas so that ``conf/<group>/*.yaml`` can extend them by name."""
    cs = ConfigStore.instance()
    cs.store(group="model", name="model_schema", node=ModelConfig)
    cs.store(group="data", name="parallel_schema", node=ParallelDataConfig)
    cs.store(group="task", name="translation_schema", node=TranslationTaskConfig)
    cs.store(group="optimizer", name="adam_schema", node=AdamConfig)
    cs.store(group="scheduler", name="scheduler_schema", node=SchedulerConfig)
    cs.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    cs.store(group="logger", name="logger_schema", node=LoggerConfig)
    register_text_task_schemas(cs)  # sentiment, tagging, charlm (section at the end)
    # vision tasks (issue 5)
    cs.store(group="task", name="captioning_schema", node=CaptioningTaskConfig)
    cs.store(group="task", name="frames_schema", node=FramesTaskConfig)
    cs.store(group="data", name="captions_schema", node=CaptionDataConfig)
    cs.store(group="data", name="synthetic_captions_schema", node=SyntheticCaptionDataConfig)
    cs.store(group="data", name="synthetic_frames_schema", node=SyntheticFramesDataConfig)
    cs.store(group="data", name="frame_folders_schema", node=FrameFolderDataConfig)


def to_spec(node: Any) -> Any:
    """A composed config node as its plain dataclass (or dict), never a DictConfig."""
    return OmegaConf.to_object(node)


# ------------------------------------------------- text tasks: sentiment, tagging, charlm (issue 4)
class Pooling(str, Enum):
    """How a sentence classifier turns encoder states into one vector.

    ``auto``: attention pooling when ``model.attention`` is not none, else ``final``;
    ``final``: the top layer's last hidden state (both directions); ``max``/``mean`` over time;
    ``attention``: a learned query attends over the states (weights shown per word);
    ``concat``: final, max and mean side by side (ULMFiT's concat pooling)."""

    auto = "auto"
    final = "final"
    max = "max"
    mean = "mean"
    concat = "concat"
    attention = "attention"


class Truncation(str, Enum):
    """Which tokens of a text longer than ``data.max_len`` are kept."""

    head = "head"  # the first max_len
    tail = "tail"  # the last max_len
    head_tail = "head_tail"  # the first max_len // 2 and the last max_len - max_len // 2


class CharFeatures(str, Enum):
    none = "none"
    cnn = "cnn"  # char embeddings -> convolution -> max over the word (Ma & Hovy 2016)
    lstm = "lstm"  # char BiLSTM, final states of both directions (Plank et al. 2016)


@dataclass
class PathSplit:
    path: str | None = None  # a TSV/CSV/JSONL table, a CoNLL-U file or a text file


@dataclass
class ClassificationDataConfig:
    """Labelled texts: bundled SST-2/IMDB, the user's TSV/CSV/JSONL, or a hub dataset."""

    _target_: str = "seqlab.data.classification.load_classification"
    format: TextFormat = TextFormat.tsv  # tsv | csv | jsonl | auto (by file name) | hub
    name: str | None = None  # hub dataset name (format=hub)
    subset: str | None = None  # format=hub: the dataset's subset (config name), if it has several
    revision: str | None = None  # format=hub: a branch, tag or commit of the dataset's repository
    text_column: str = "sentence"
    label_column: str = "label"
    train: PathSplit = field(default_factory=PathSplit)
    val: PathSplit = field(default_factory=PathSplit)
    test: PathSplit = field(default_factory=PathSplit)
    val_fraction: float = 0.0  # >0 and no val file: carve a seeded validation split from train
    split_seed: int = 1234
    tokenizer: Tokenizer = Tokenizer.space
    lowercase: bool = False
    strip_html: bool = False  # IMDB reviews hold <br /> tags
    max_len: int = 0  # tokens kept per text (longer ones truncated and counted); 0 = all
    truncation: Truncation = Truncation.head  # which max_len tokens of a longer text are kept


@dataclass
class TaggingDataConfig:
    """Token-level tags: CoNLL-U files (bundled UD EWT or the user's) or a hub dataset."""

    _target_: str = "seqlab.data.conllu.load_tagging"
    format: str = "conllu"  # conllu | hub
    name: str | None = None  # hub dataset name (format=hub)
    subset: str | None = None  # format=hub: the dataset's subset (config name), if it has several
    revision: str | None = None  # format=hub: a branch, tag or commit of the dataset's repository
    tag_column: str = "upos"  # conllu: upos | xpos; hub: the column holding the tags
    tokens_column: str = "tokens"  # hub only
    # more tag columns learnt beside tag_column as extra outputs (multi-task; conllu: upos, xpos,
    # feats, deprel; hub: column names); the task reports val/acc_<column> for each
    aux_columns: list[str] = field(default_factory=list)
    train: PathSplit = field(default_factory=PathSplit)
    val: PathSplit = field(default_factory=PathSplit)
    test: PathSplit = field(default_factory=PathSplit)
    val_fraction: float = 0.0  # >0 and no val file: carve a seeded validation split from train
    split_seed: int = 1234
    tokenizer: Tokenizer = Tokenizer.space  # how `seqlab predict` splits an input sentence


@dataclass
class CharDataConfig:
    """One long text for a character language model; the tail is the validation split."""

    _target_: str = "seqlab.data.chars.load_chars"
    path: str = MISSING
    val_path: str | None = None  # a separate validation text instead of the tail of `path`
    val_fraction: float = 0.1  # last fraction of `path` (by characters) held out for validation


@dataclass
class EmbeddingsConfig:
    path: str | None = None  # GloVe / word2vec *text* file (word v1 v2 ...); dims = model.emb_size
    freeze: bool = False
    extend_vocab: bool = False  # every word of the file gets a row, also those never seen in training
    residual: bool = False  # tagging: the vectors stay fixed; a trainable embedding (zero at start) is added
    # instead of a file: skip-gram vectors trained at start-up (inside the run's time) on these texts:
    # imdb | sst2 | ud_ewt (bundled, no labels read) | a text file; written to <cache_dir>/vectors/
    pretrain: list[str] = field(default_factory=list)
    pretrain_epochs: int = 2
    pretrain_min_count: int = 3


@dataclass
class LMPretrainConfig:
    """Language-model pretraining of the task's own embedding and RNN on unlabelled text before it
    sees a label (``seqlab.models.bilm``): counted in the run's time, like task.embeddings.pretrain."""

    text: list[str] = field(default_factory=list)  # imdb | sst2 | ud_ewt (bundled, no labels read) | a text file; [] = off
    minutes: float = 10.0  # wall-clock budget (0: steps alone)
    steps: int = 0  # at most this many updates (0: minutes alone)
    extend_vocab: bool = False  # words of the text seen >= min_count times get their own row (trained by the LM)
    min_count: int = 3
    seq_len: int = 64  # tokens per segment of the text stream
    batch_size: int = 64
    lr: float = 2.0e-3
    cutoffs: list[int] = field(default_factory=lambda: [2000, 10000])  # adaptive softmax clusters
    precision: str = "fp32"  # fp32 | bf16 (autocast) | fast (bf16 where it beats fp32, see trainer.precision)
    device: str = "auto"  # auto: cuda when there is one, else cpu
    # afterwards, on the labelled task: the pretrained parameters' learning rate relative to
    # optimizer.lr (ULMFiT's discriminative fine-tuning; 0 freezes them), and the embedding's
    # (null: the same as the others)
    finetune_lr_scale: float = 1.0
    embedding_lr_scale: float | None = None


@dataclass
class LabelPretrainConfig:
    """Supervised pretraining on another labelled corpus before the task's own labels (intermediate-
    task transfer): the classifier learns ``data``'s labels for a budget, then the task's. It runs
    after task.lm_pretrain, and its minutes count in the run's time too."""

    # a labelled-text data config, composed from the data group in an experiment's defaults list
    # (``- /data@task.label_pretrain.data: imdb``) or given key by key; null = off
    data: ClassificationDataConfig | None = None
    minutes: float = 4.0  # wall-clock budget (0: steps alone)
    steps: int = 0  # at most this many updates (0: minutes alone)
    batch_size: int = 32
    lr: float = 3.0e-3
    warmup_steps: int = 100  # the rate rises linearly to lr over these updates
    share_head: bool = True  # the same label names as the task's: its classifier layer carries over
    extend_vocab: bool = False  # words of data's training texts seen >= min_count times get their own row
    min_count: int = 3
    precision: str = "fp32"  # fp32 | bf16 (autocast) | fast (bf16 where it beats fp32)
    device: str = "auto"  # auto: cuda when there is one, else cpu
    eval_limit: int = 1000  # at the end, accuracy on the first N texts of data's validation split (0: none)


@dataclass
class SentimentTaskConfig:
    _target_: str = "seqlab.tasks.sentiment.SentimentTask"
    _partial_: bool = True
    _recursive_: bool = False  # label_pretrain.data is a data config: the task reads it only when it trains
    name: str = "sentiment"
    monitor: str = "val/acc"
    monitor_mode: str = "max"
    vocab: VocabConfig = field(default_factory=lambda: VocabConfig(min_freq=1))
    pooling: Pooling = Pooling.auto
    classifier_hidden: int = 0  # > 0: a ReLU layer of this size between the pooled vector and the logits
    embeddings: EmbeddingsConfig = field(default_factory=EmbeddingsConfig)
    packed: bool = True  # false: the RNN runs over the padded batch (same result; faster LSTM on a CPU)
    word_dropout: float = 0.0  # training tokens replaced by <unk> (so that unknown words have a trained input)
    adversarial: float = 0.0  # > 0: adversarial training, word vectors moved by this fraction of their norm
    lm_pretrain: LMPretrainConfig = field(default_factory=LMPretrainConfig)
    label_pretrain: LabelPretrainConfig = field(default_factory=LabelPretrainConfig)
    eval_batch_size: int = 128
    num_samples: int = 3  # validation texts logged with their attention weights


@dataclass
class TaggingTaskConfig:
    _target_: str = "seqlab.tasks.tagging.TaggingTask"
    _partial_: bool = True
    name: str = "tagging"
    monitor: str = "val/acc"
    monitor_mode: str = "max"
    vocab: VocabConfig = field(default_factory=lambda: VocabConfig(min_freq=1))
    char_features: CharFeatures = CharFeatures.cnn
    char_emb_size: int = 32
    char_hidden_size: int = 64  # CNN filters, or BiLSTM size over both directions
    max_word_len: int = 24  # characters seen by the char features (longer words cut)
    word_dropout: float = 0.0  # training tokens replaced by <unk> (teaches the unknown-word path)
    word_dropout_alpha: float = 0.0  # and a word seen c times in training with probability alpha/(alpha+c)
    lowercase_words: bool = False  # word embeddings for lower-cased forms (characters keep the case)
    aux_weight: float = 1.0  # weight of each data.aux_columns output's loss beside the main tags'
    adversarial: float = 0.0  # > 0: adversarial training, input vectors moved by this fraction of their norm
    embeddings: EmbeddingsConfig = field(default_factory=EmbeddingsConfig)
    lm_pretrain: LMPretrainConfig = field(default_factory=LMPretrainConfig)  # embedding, chars, first RNN layer
    packed: bool = True  # false: the RNNs run over the padded batch (same result; faster LSTM on a CPU)
    eval_batch_size: int = 128
    num_samples: int = 3


@dataclass
class GradientFlowConfig:
    """charlm: at each validation, log10 || d loss_T / d x_{T-lag} || on fixed validation chunks
    (``val/log10_grad_lag_<lag>``; ``seqlab.tasks.charlm.gradient_by_lag``)."""

    lags: list[int] = field(default_factory=lambda: [1, 10, 30, 100])  # [] = not measured
    chunks: int = 8  # validation chunks, the same ones at every validation
    length: int = 128  # characters per chunk, read from a zero state; must exceed the largest lag


@dataclass
class CharLMTaskConfig:
    _target_: str = "seqlab.tasks.charlm.CharLMTask"
    _partial_: bool = True
    name: str = "charlm"
    monitor: str = "val/loss"
    monitor_mode: str = "min"
    bptt: int = 128  # characters per chunk (truncated backpropagation through time)
    attn_window: int = 32  # *_attn: each step attends over this many previous states
    eval_streams: int = 16  # parallel streams over the validation text
    sample_prime: str = "ROMEO:"
    sample_len: int = 300  # characters sampled into TensorBoard at each validation
    sample_temperature: float = 0.8
    gradient_flow: GradientFlowConfig = field(default_factory=GradientFlowConfig)


def register_text_task_schemas(cs: ConfigStore) -> None:
    cs.store(group="data", name="classification_schema", node=ClassificationDataConfig)
    cs.store(group="data", name="tagging_schema", node=TaggingDataConfig)
    cs.store(group="data", name="chars_schema", node=CharDataConfig)
    cs.store(group="task", name="sentiment_schema", node=SentimentTaskConfig)
    cs.store(group="task", name="tagging_schema", node=TaggingTaskConfig)
    cs.store(group="task", name="charlm_schema", node=CharLMTaskConfig)
