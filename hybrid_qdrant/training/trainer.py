"""Fine-tuning with hybrid batches through sentence-transformers' trainer.

:func:`train` checks everything it can before the first step (precision against the device, the output
directory, the data, alpha against the data, the model), then runs SentenceTransformerTrainer with the
hybrid batch sampler, InfoNCE, AdamW, warm-up, checkpoints, resume, validation loss and early stopping,
and saves a standard sentence-transformers model with the ``query`` / ``passage`` prompts set.
``[model] kind = "decoder"`` builds the embedder from a decoder-only LM (``decoder.py``); a ``[lora]``
table trains peft adapters instead of every weight, and the saved model then holds the adapter only
(``lora.py``).
Under ``accelerate launch`` or ``torchrun`` every process runs it; the sampler aligns the batch kind
across processes and only the main process writes the model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import tomli_w
import torch
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from transformers import EarlyStoppingCallback, PreTrainedModel, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from hybrid_qdrant.atomic_write import atomic_write_bytes
from hybrid_qdrant.encoding.encoder import load_sentence_transformer
from hybrid_qdrant.errors import ConfigError
from hybrid_qdrant.ranks import world_size
from hybrid_qdrant.training.config import TrainConfig
from hybrid_qdrant.training.loss import build_loss
from hybrid_qdrant.training.pair_index import PairIndex
from hybrid_qdrant.training.sampler import BatchShareMeter, HybridSamplerFactory, describe_steps
from hybrid_qdrant.training.sources import holdout, load_pairs
from hybrid_qdrant.types import Pair

logger = logging.getLogger(__name__)

FINAL_DIR = "final"
CONFIG_COPY = "train_config.toml"
#: The run's log history (loss, learning rate, realised batch share, evaluations per logged step).
LOG_HISTORY = "log_history.json"
NEGATIVES = {"auto": None, "require": True, "ignore": False}


class HybridTrainer(SentenceTransformerTrainer):
    """SentenceTransformerTrainer that adds the realised mono / cross batch share to its training logs."""

    meter: BatchShareMeter | None = None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.meter is not None and "loss" in logs:
            logs.update(self.meter.shares(self.state.global_step))
        super().log(logs, start_time)

    def _load_from_checkpoint(self, checkpoint_path: str, *args, **kwargs) -> None:
        """Resume: a LoRA checkpoint holds the adapter only, loaded into the wrapped model as it is."""
        from hybrid_qdrant.training.lora import is_lora_model, load_adapter_weights

        if is_lora_model(self.model):
            load_adapter_weights(self.model, checkpoint_path)
        else:
            super()._load_from_checkpoint(checkpoint_path, *args, **kwargs)


def resolve_precision(requested: str) -> str:
    """``fp32``, ``fp16`` or ``bf16`` for this machine; fp16 / bf16 without a CUDA GPU are refused.

    Raises:
        ConfigError: fp16 or bf16 asked for where no CUDA GPU (with bf16 support) is visible.
    """
    cuda = torch.cuda.is_available()
    if requested == "auto":
        if not cuda:
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if requested in ("fp16", "bf16") and not cuda:
        raise ConfigError(
            f"[train] precision = {requested!r} needs a CUDA GPU and none is visible; "
            "use precision = 'auto' (fp32 here) or 'fp32'"
        )
    if requested == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("[train] precision = 'bf16' is not supported by this GPU; use 'fp16' or 'auto'")
    return requested


def resolve_dtype(config: TrainConfig, precision: str) -> str:
    """``fp32``, ``bf16`` or ``fp16``: the dtype the weights load in (``[model] dtype``).

    ``auto`` gives bf16 when LoRA trains under bf16 (the base is frozen, so no fp32 master copy is
    needed) and fp32 otherwise; QLoRA's 4-bit base computes in this dtype.

    Raises:
        ConfigError: fp16 weights where no CUDA GPU is visible.
    """
    requested = config.model.dtype
    if requested == "auto":
        return "bf16" if config.lora is not None and precision == "bf16" else "fp32"
    if requested == "fp16" and not torch.cuda.is_available():
        raise ConfigError("[model] dtype = 'fp16' needs a CUDA GPU and none is visible; use 'fp32' or 'bf16'")
    return requested


def load_model(config: TrainConfig, precision: str):
    """The model to train: an encoder as it is, or a decoder made an embedder; LoRA-wrapped with ``[lora]``.

    Raises:
        ModelError: the model cannot be loaded. ConfigError: QLoRA without a GPU or bitsandbytes.
    """
    from hybrid_qdrant.training.decoder import torch_dtype

    m = config.model
    dtype = resolve_dtype(config, precision)
    if m.kind == "decoder":
        from hybrid_qdrant.training.decoder import build_decoder_model

        model_kwargs = {}
        if config.lora is not None and config.lora.qlora:
            from hybrid_qdrant.training.lora import quantization_kwargs

            model_kwargs = quantization_kwargs(torch_dtype(dtype))
        model = build_decoder_model(
            m.name, pooling=m.pooling, max_seq_length=m.max_seq_length, dtype=dtype, model_kwargs=model_kwargs
        )
    else:
        model = load_sentence_transformer(m.name)
        if m.max_seq_length:
            model.max_seq_length = m.max_seq_length
        if m.dtype != "auto" or config.lora is not None:
            model.to(torch_dtype(dtype))
    if config.lora is not None:
        from hybrid_qdrant.training.lora import apply_lora

        apply_lora(
            model,
            config.lora,
            gradient_checkpointing=config.train.gradient_checkpointing,
            seed=config.train.seed,
        )
    return model


def freeze_token_embeddings(model: torch.nn.Module) -> None:
    """Stop training the token-embedding matrix of the model's transformer.

    Raises:
        ConfigError: the model holds no Hugging Face transformer with input embeddings.
    """
    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            weight = module.get_input_embeddings().weight  # (vocab, hidden)
            weight.requires_grad_(False)
            logger.info("token embeddings frozen: %d x %d", *weight.shape)
            return
    raise ConfigError("[train] freeze_embeddings: the model has no transformer with token embeddings")


def resume_point(config: TrainConfig) -> str | None:
    """The checkpoint to continue from: the latest ``checkpoint-*`` when ``resume`` is set.

    Raises:
        ConfigError: the output directory holds checkpoints but ``resume`` is off.
    """
    out = config.output_dir
    last = get_last_checkpoint(str(out)) if out.is_dir() else None
    if config.train.resume:
        if last is None:
            logger.warning("resume = true but %s holds no checkpoint: starting from the base model", out)
        else:
            logger.info("resuming from %s", last)
        return last
    if last is not None:
        raise ConfigError(
            f"{out} already holds checkpoints (latest: {Path(last).name}); set [train] resume = true "
            "(--resume) to continue from it, or choose another [output] dir"
        )
    return None


def training_data(config: TrainConfig) -> tuple[list[Pair], list[Pair]]:
    """The (training, validation) pairs: validation from its own sources or a held-out share of groups."""
    pairs = load_pairs(config.data.sources, config.data.languages)
    v = config.validation
    if v.sources:
        return pairs, load_pairs(v.sources, config.data.languages)
    if v.fraction:
        train_pairs, held = holdout(pairs, v.fraction, config.train.seed)
        logger.info("held out %d of %d pairs for validation", len(held), len(pairs))
        if not held or not train_pairs:
            raise ConfigError(
                f"[validation] fraction = {v.fraction} leaves {len(train_pairs)} training and {len(held)} "
                "validation pairs; change the fraction"
            )
        return train_pairs, held
    return pairs, []


def build_indexes(config: TrainConfig) -> tuple[PairIndex, PairIndex | None, list[Pair]]:
    """Load the data and number its examples; check that alpha's batch kinds exist in it.

    Returns:
        The training index, the validation index (or None) and the validation pairs.

    Raises:
        DataError: bad or missing data. ConfigError: cross-lingual batches asked of data without parallel
            groups.
    """
    train_pairs, val_pairs = training_data(config)
    train_index = PairIndex(train_pairs, negatives=NEGATIVES[config.data.negatives])
    logger.info("training data: %s", train_index.describe())
    alpha = config.train.alpha
    if alpha < 1.0 and train_index.n_cross_groups == 0:
        raise ConfigError(
            f"[train] alpha = {alpha} asks for cross-lingual batches, but the training data has no parallel "
            "groups (no group_id is shared by pairs in two languages); use alpha = 1 or add translations"
        )
    val_index = None
    if val_pairs:
        val_index = PairIndex(val_pairs, negatives=None if train_index.has_negatives else False)
        logger.info("validation data: %s", val_index.describe())
    return train_index, val_index, val_pairs


def training_arguments(
    config: TrainConfig, precision: str, validate: bool
) -> SentenceTransformerTrainingArguments:
    """The trainer's arguments for a config (the batch sampler is set by :func:`train`)."""
    t, o, v, m = config.train, config.output, config.validation, config.model
    eval_steps = v.eval_steps or o.save_steps
    early = validate and v.early_stopping_patience > 0
    return SentenceTransformerTrainingArguments(
        output_dir=str(config.output_dir),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        optim="adamw_torch",
        warmup_steps=t.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type=t.lr_scheduler,
        max_grad_norm=t.max_grad_norm,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        seed=t.seed,
        fp16=precision == "fp16",
        bf16=precision == "bf16",
        dataloader_num_workers=t.dataloader_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        # several processes without a GPU (torchrun on CPUs): DDP over gloo rather than N copies
        use_cpu=not torch.cuda.is_available() and world_size() > 1,
        prompts={"query": m.query_prompt, "passage": m.passage_prefix, "negative": m.passage_prefix},
        save_strategy="steps",
        save_steps=o.save_steps,
        save_total_limit=o.save_total_limit or None,
        logging_steps=o.logging_steps,
        report_to=list(o.report_to),
        eval_strategy="steps" if validate else "no",
        eval_steps=eval_steps if validate else None,
        load_best_model_at_end=early,
        metric_for_best_model="eval_loss" if early else None,
        greater_is_better=False if early else None,
        **_checkpointing(t.gradient_checkpointing),
    )


def _checkpointing(enabled: bool) -> dict[str, object]:
    """Activation (gradient) checkpointing arguments under the name this transformers version uses."""
    if not enabled:
        return {}
    names = {f.name for f in dataclasses.fields(SentenceTransformerTrainingArguments)}
    key = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {key: True, f"{key}_kwargs": {"use_reentrant": False}}


def train(config: TrainConfig, callbacks: Sequence[TrainerCallback] = ()) -> Path:
    """Fine-tune ``config.model.name`` with hybrid batches; return the saved model directory.

    Args:
        config: the run.
        callbacks: extra transformers TrainerCallbacks (progress hooks, tests).

    Returns:
        ``<output dir>/final``: a sentence-transformers model directory with the prompts set.

    Raises:
        ConfigError / DataError / ModelError: before the first step, for anything that can be checked.
    """
    precision = resolve_precision(config.train.precision)
    resume_from = resume_point(config)
    train_index, val_index, val_pairs = build_indexes(config)

    model = load_model(config, precision)
    prefixes = {"query": config.model.query_prompt, "passage": config.model.passage_prefix}
    model.prompts = {**model.prompts, **prefixes, "document": config.model.passage_prefix}
    if config.train.freeze_embeddings:
        freeze_token_embeddings(model)

    args = training_arguments(config, precision, validate=val_index is not None)
    meter = BatchShareMeter()
    args.batch_sampler = HybridSamplerFactory(
        train_index,
        alpha=config.train.alpha,
        language_sampling=config.train.language_sampling,
        world_size=args.world_size,
        validation=val_index,
        meter=meter,
    )
    evaluator = None
    if config.validation.ir_evaluation and val_pairs:
        from hybrid_qdrant.training.ir_evaluation import build_ir_evaluator

        evaluator = build_ir_evaluator(val_pairs, config.model.query_prompt, config.model.passage_prefix)
    extra = list(callbacks)
    if args.load_best_model_at_end:
        extra.append(EarlyStoppingCallback(early_stopping_patience=config.validation.early_stopping_patience))
    trainer = HybridTrainer(
        model=model,
        args=args,
        train_dataset=train_index.dataset,
        eval_dataset=val_index.dataset if val_index is not None else None,
        loss=build_loss(model, config.loss, distributed=args.world_size > 1),
        evaluator=evaluator,
        callbacks=extra,
    )
    trainer.meter = meter
    t = config.train
    length = f"max_steps {t.max_steps}" if t.max_steps else f"{t.epochs} epoch(s)"
    logger.info(
        "training %s: alpha %.2f, batch %d x %d device(s), precision %s, %s",
        config.model.name,
        t.alpha,
        t.batch_size,
        args.world_size,
        precision,
        length,
    )
    trainer.train(resume_from_checkpoint=resume_from)
    trained = trainer.state.global_step
    shares = meter.shares(trained)
    if shares:
        logger.info(
            "realised batch share over the %d steps trained: mono %.3f, cross %.3f (alpha %.2f; %s)",
            trained,
            shares["mono_share"],
            shares["cross_share"],
            config.train.alpha,
            describe_steps(meter.steps(trained)),
        )

    final = config.output_dir / FINAL_DIR
    trainer.save_model(str(final))
    if trainer.is_world_process_zero():
        (config.output_dir / CONFIG_COPY).write_text(tomli_w.dumps(config.to_dict()), encoding="utf-8")
        history = {"steps": trained, "realised_share": shares, "log_history": trainer.state.log_history}
        atomic_write_bytes(config.output_dir / LOG_HISTORY, (json.dumps(history, indent=1) + "\n").encode())
        logger.info("saved the model to %s (%s)", final, _size(folder_bytes(final)))
        if not config.output.keep_checkpoints:
            remove_checkpoints(config.output_dir)
    return final


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder``."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def remove_checkpoints(out: Path) -> list[Path]:
    """Delete the ``checkpoint-N`` folders of a finished run (they serve ``resume`` only); return them.

    A folder that cannot be removed is logged and left; the run stays finished.
    """
    removed, freed = [], 0
    for folder in sorted(out.glob(f"{PREFIX_CHECKPOINT_DIR}-*")):
        if not folder.is_dir() or not folder.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-").isdigit():
            continue
        size = folder_bytes(folder)
        try:
            shutil.rmtree(folder)
        except OSError as exc:
            logger.warning("could not remove the checkpoint %s: %s", folder, exc)
            continue
        removed.append(folder)
        freed += size
    if removed:
        logger.info(
            "removed %s (%s; they serve resume only, [output] keep_checkpoints = true keeps them)",
            ", ".join(f.name for f in removed),
            _size(freed),
        )
    return removed
