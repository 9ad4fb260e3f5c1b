import { jsonl, lossMessages } from "./data.js";
import { modelName, tokenizerAddsBos } from "./model.js";
import {
  type BuiltJob,
  bashScript,
  convertAndServe,
  epochsFor,
  type JobPlan,
  type Launch,
  LORA_OFF,
  launchShapes,
  localRows,
  refuse,
  type Shape,
  times,
  totalSteps,
  unsplittable,
} from "./plan.js";
import { toYaml, type YamlValue } from "./yaml.js";

/**
 * A NeMo RL 0.7.0 job: a complete SFT config for the DTensor (PyTorch FSDP2) backend, validated by NeMo
 * RL's MasterConfig, OpenAI-format `messages` JSONL cut at steerlm's loss boundaries with a pass-through
 * chat template, and run.sh, which runs examples/run_sft.py from a NeMo RL checkout with the job's paths.
 * docs/engines-training.md has the sources of every rule here.
 */

/**
 * Concatenates the message contents: the text steerlm renders, byte for byte. Written as a string because
 * 0.7.0 types `chat_template` as a string and rejects the documented `null` pass-through.
 */
export const PASS_THROUGH_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}";

/** For maxGradNorm 0 (no clipping): a norm no gradient reaches (what NeMo Automodel does with 0 is unverified). */
const NO_CLIP = 1e9;

export function nemoRlJob(plan: JobPlan): BuiltJob {
  const { cfg } = plan;
  if (cfg.lora) {
    throw refuse(
      plan,
      "lora",
      "a LoRA run that comes back to steerlm: it documents no way from a DTensor LoRA checkpoint to a Hugging Face model",
      "train every weight on nemo-rl (drop lora), or export the job for trl",
    );
  }
  if (cfg.weightDecay !== 0) {
    throw refuse(
      plan,
      "weightDecay",
      "weight decay on the matrices only: its AdamW gets every parameter in one group, so norms and biases would decay too",
      "export with weightDecay 0",
    );
  }
  if (cfg.warmupSteps < 2) {
    throw refuse(
      plan,
      "warmupSteps",
      `steerlm's schedule with ${cfg.warmupSteps} warm-up step${cfg.warmupSteps === 1 ? "" : "s"}: its LinearLR → CosineAnnealingLR recipe needs 2 or more (one scheduler alone is a form 0.7.0's config check rejects, and a cosine from the first update lags steerlm's by one)`,
      "export with warmupSteps 2 or more",
    );
  }
  const train = plan.train.map((r) => ({ messages: lossMessages(r, plan.schema) }));
  const val = plan.val?.map((r) => ({ messages: lossMessages(r, plan.schema) })) ?? null;
  const steps = totalSteps(cfg, train.length);
  if (steps <= cfg.warmupSteps) {
    throw refuse(
      plan,
      "warmupSteps",
      `a run of ${steps} updates that is all warm-up (warmupSteps ${cfg.warmupSteps}): the cosine after it would have no steps`,
      "export with fewer warmupSteps or more steps",
    );
  }
  const epochs = epochsFor(plan, steps, train.length);
  const global = cfg.batchSize * cfg.gradAccum;
  const W = cfg.warmupSteps;
  // without a processor a response dataset gets the registry's "default", a math prompt processor
  const dataset = (path: string) => ({
    dataset_name: "openai_format",
    data_path: path,
    processor: "sft_processor",
  });
  const config: { [key: string]: YamlValue } = {
    sft: {
      max_num_epochs: epochs,
      max_num_steps: steps,
      val_period: val && cfg.evalEvery > 0 ? cfg.evalEvery : 0,
      val_batches: 0,
      val_global_batch_size: global,
      val_micro_batch_size: cfg.batchSize,
      val_at_start: false,
      val_at_end: val !== null,
      seed: cfg.seed,
      only_unmask_final: false,
    },
    checkpointing: {
      enabled: true,
      checkpoint_dir: "results",
      metric_name: null,
      higher_is_better: false,
      keep_top_k: cfg.keepCheckpoints,
      save_period: cfg.checkpointEvery > 0 ? cfg.checkpointEvery : steps,
      checkpoint_must_save_by: null,
      save_optimizer: true,
    },
    policy: {
      model_name: modelName(plan.model),
      tokenizer: { name: modelName(plan.model), chat_template: PASS_THROUGH_TEMPLATE },
      train_global_batch_size: global,
      train_micro_batch_size: cfg.batchSize,
      max_total_sequence_length: cfg.seqLen,
      precision: cfg.computeType === "bf16" ? "bfloat16" : "float32",
      dtensor_cfg: {
        _v2: true,
        enabled: true,
        env_vars: {},
        cpu_offload: false,
        sequence_parallel: false,
        activation_checkpointing: false,
        tensor_parallel_size: 1,
        context_parallel_size: 1,
        dp_replicate_size: 1,
        custom_parallel_plan: null,
        lora_cfg: { enabled: false },
      },
      dynamic_batching: { enabled: false },
      sequence_packing: { enabled: false },
      make_sequence_length_divisible_by: 1,
      max_grad_norm: cfg.maxGradNorm > 0 ? cfg.maxGradNorm : NO_CLIP,
      optimizer: {
        name: "torch.optim.AdamW",
        kwargs: {
          lr: cfg.lr,
          weight_decay: 0,
          betas: [cfg.beta1, cfg.beta2],
          eps: cfg.eps,
          // as NeMo RL's own sft.yaml sets them for DTensor
          foreach: false,
          fused: false,
        },
      },
      scheduler: [
        {
          name: "torch.optim.lr_scheduler.LinearLR",
          kwargs: { start_factor: 1 / W, end_factor: 1, total_iters: W - 1 },
        },
        {
          name: "torch.optim.lr_scheduler.CosineAnnealingLR",
          kwargs: { T_max: steps - W, eta_min: times(cfg.lr, cfg.minLrRatio) },
        },
        { milestones: [W - 1] },
      ],
      // sft.py reads megatron_cfg.enabled whatever the backend
      megatron_cfg: { enabled: false },
    },
    data: {
      max_input_seq_length: cfg.seqLen,
      // NeMo RL prepends BOS whenever the tokenizer has one; steerlm and TRL only where the tokenizer adds it
      add_bos: tokenizerAddsBos(plan.model) ?? true,
      add_eos: false,
      add_generation_prompt: false,
      shuffle: true,
      num_workers: 1,
      train: dataset("data/train.jsonl"),
      ...(val ? { validation: dataset("data/validation.jsonl") } : {}),
    },
    logger: {
      log_dir: "logs",
      wandb_enabled: false,
      tensorboard_enabled: true,
      mlflow_enabled: false,
      swanlab_enabled: false,
      monitor_gpus: false,
      wandb: { project: "steerlm", name: "steerlm-sft" },
      tensorboard: { log_dir: "tensorboard" },
      gpu_monitoring: { collection_interval: 10, flush_interval: 10 },
    },
    cluster: { gpus_per_node: 1, num_nodes: 1 },
  };
  const paths = [
    'data.train.data_path="$JOB/data/train.jsonl"',
    ...(val ? ['data.validation.data_path="$JOB/data/validation.jsonl"'] : []),
    'checkpointing.checkpoint_dir="$JOB/results"',
    'logger.log_dir="$JOB/logs"',
    'logger.tensorboard.log_dir="$JOB/logs/tensorboard"',
  ];
  const runSh = bashScript(
    [
      "NeMo RL 0.7.0 SFT, written by steerlm export job. Run from a NeMo RL v0.7.0 checkout (or set NEMO_RL to",
      "one); extra arguments are Hydra overrides, e.g. cluster.gpus_per_node=8. The job's paths are made absolute",
      "here because NeMo RL reads them relative to its checkout.",
    ],
    [
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion, not a template
      'cd "${NEMO_RL:-$PWD}"',
      'exec uv run examples/run_sft.py --config "$JOB/sft.yaml" \\',
      ...paths.map((p) => `  ${p} \\`),
      '  "$@"',
    ],
  );
  return {
    config: { path: "sft.yaml", value: config },
    steps,
    files: [
      {
        path: "sft.yaml",
        text: toYaml(config, [
          "NeMo RL 0.7.0 SFT config (DTensor backend), written by steerlm export job: run it with run.sh",
        ]),
      },
      { path: "run.sh", text: runSh, executable: true },
      { path: "data/train.jsonl", text: jsonl(train) },
      ...(val ? [{ path: "data/validation.jsonl", text: jsonl(val) }] : []),
    ],
    mapping: {
      data: {
        keys: ["data.train.dataset_name", "data.train.data_path", "data.train.processor"],
        exact: "exact",
        note: `data/train.jsonl: ${train.length} conversations as messages`,
      },
      val: val
        ? {
            keys: ["data.validation.data_path"],
            exact: "exact",
            note: `data/validation.jsonl: ${val.length} conversations`,
          }
        : { keys: [], exact: "exact", note: "no validation file: no data.validation" },
      output: {
        keys: ["checkpointing.checkpoint_dir", "logger.log_dir"],
        exact: "n/a",
        note: "the job folder; run.sh makes these absolute inside it",
      },
      ...localRows(plan),
      model: { keys: ["policy.model_name", "policy.tokenizer.name"], exact: "exact" },
      lora: { keys: ["policy.dtensor_cfg.lora_cfg.enabled"], exact: "exact" },
      loraRank: LORA_OFF,
      loraAlpha: LORA_OFF,
      loraTargets: LORA_OFF,
      computeType: {
        keys: ["policy.precision"],
        exact: cfg.computeType === "f32" ? "exact" : "close",
        note:
          cfg.computeType === "f32"
            ? undefined
            : "bfloat16 in NeMo Automodel's FSDP2; how it keeps master weights is not verified here",
      },
      seqLen: {
        keys: ["policy.max_total_sequence_length", "data.max_input_seq_length"],
        exact: "close",
        note: "a conversation of seqLen tokens or more is dropped from the loss, not cut as steerlm cuts it",
      },
      batchSize: { keys: ["policy.train_micro_batch_size", "sft.val_micro_batch_size"], exact: "exact" },
      gradAccum: {
        keys: ["policy.train_global_batch_size", "sft.val_global_batch_size"],
        exact: cfg.gradAccum === 1 ? "exact" : "close",
        note: `batchSize × gradAccum sequences per update over all GPUs${cfg.gradAccum === 1 ? "" : "; the loss is the token mean over the whole update, steerlm averages the micro-batch means"}`,
      },
      steps:
        cfg.steps > 0
          ? { keys: ["sft.max_num_steps"], exact: "exact" }
          : { keys: [], exact: "n/a", note: "0: the epochs decide" },
      epochs:
        cfg.steps > 0
          ? { keys: ["sft.max_num_epochs"], exact: "n/a", note: "steps is set; enough epochs to reach them" }
          : {
              keys: ["sft.max_num_steps", "sft.max_num_epochs"],
              exact: "close",
              note: `⌈${cfg.epochs} × ${train.length} / ${global}⌉ updates; each epoch drops its last partial batch, so the epochs needed for them`,
            },
      lr: { keys: ["policy.optimizer.name", "policy.optimizer.kwargs.lr"], exact: "exact" },
      warmupSteps: {
        keys: ["policy.scheduler"],
        exact: "exact",
        note: "LinearLR from 1/W over W − 1 updates, then CosineAnnealingLR from the milestone W − 1: lr·k/W, then steerlm's cosine",
      },
      minLrRatio: {
        keys: ["policy.scheduler"],
        exact: "exact",
        note: "the cosine's eta_min = lr × minLrRatio",
      },
      weightDecay: { keys: ["policy.optimizer.kwargs.weight_decay"], exact: "exact" },
      maxGradNorm: {
        keys: ["policy.max_grad_norm"],
        exact: "exact",
        note: cfg.maxGradNorm > 0 ? undefined : "0 (off): a norm no gradient reaches",
      },
      beta1: { keys: ["policy.optimizer.kwargs.betas"], exact: "exact" },
      beta2: { keys: ["policy.optimizer.kwargs.betas"], exact: "exact" },
      eps: { keys: ["policy.optimizer.kwargs.eps"], exact: "exact" },
      seed: { keys: ["sft.seed"], exact: "close", note: "seeds NeMo RL's own data order, not steerlm's" },
      evalEvery: val
        ? { keys: ["sft.val_period", "sft.val_at_end"], exact: "exact", note: "and at the last step" }
        : { keys: ["sft.val_period"], exact: "n/a", note: "no validation file" },
      evalBatches: val
        ? {
            keys: ["sft.val_batches"],
            exact: "exact",
            note: "data/validation.jsonl holds the first evalBatches × batchSize validation conversations (0: all); val_batches 0 evaluates all of it",
          }
        : { keys: [], exact: "n/a", note: "no validation file" },
      checkpointEvery: { keys: ["checkpointing.save_period"], exact: "exact", note: "and at the last step" },
      keepCheckpoints: {
        keys: ["checkpointing.keep_top_k", "checkpointing.metric_name"],
        exact: "exact",
        note: "no metric: the newest are kept",
      },
    },
    fixed: [
      {
        keys: ["policy.tokenizer.chat_template"],
        note: "pass-through: the messages are steerlm's text, cut at the loss boundaries",
      },
      {
        keys: ["data.add_bos", "data.add_eos"],
        note: "BOS first where the model's tokenizer adds one (true where the job cannot read the tokenizer), no EOS after the final `<extra_id_1>`",
      },
      {
        keys: ["policy.optimizer.kwargs.foreach", "policy.optimizer.kwargs.fused"],
        note: "as NeMo RL's own sft.yaml for DTensor",
      },
      { keys: ["policy.megatron_cfg.enabled"], note: "sft.py reads it whatever the backend" },
      { keys: ["logger.tensorboard_enabled"], note: "loss curves in logs/tensorboard" },
    ],
    facts: [
      `${train.length} training conversations${val ? `, ${val.length} validation conversations` : ""}.`,
      `${steps} optimiser updates of ${global} sequences (sft.max_num_steps), over at most ${epochs} epoch${epochs === 1 ? "" : "s"}.`,
    ],
    install: [
      "git clone https://github.com/NVIDIA-NeMo/RL nemo-rl && git -C nemo-rl checkout v0.7.0",
      "cd nemo-rl   # uv resolves the environment on the first `uv run`",
    ],
    launches: launchShapes(plan).map((s) => launch(plan, s)),
    bringBack: [
      "Checkpoints are PyTorch distributed checkpoints in `results/step_N/`. Convert the last one to a Hugging Face directory from the NeMo RL checkout, copy its tokenizer beside it, save its weights as safetensors (NeMo RL's converter writes only `pytorch_model.bin`, a pickle, which steerlm does not read), then convert that:",
      [
        "```sh",
        "CKPT=<this folder>/results/step_N",
        "uv run examples/converters/convert_dcp_to_hf.py --config=$CKPT/config.yaml --dcp-ckpt-path=$CKPT/policy/weights --hf-ckpt-path=$CKPT-hf",
        "cp $CKPT/policy/tokenizer/* $CKPT-hf/",
        `uv run python -c "import sys; from transformers import AutoModelForCausalLM as M; M.from_pretrained(sys.argv[1], torch_dtype='auto').save_pretrained(sys.argv[1])" $CKPT-hf`,
        ...convertAndServe("$CKPT-hf", "<this folder>/"),
        "```",
      ].join("\n"),
    ],
    differences: [
      "Over-long conversations (seqLen tokens or more) are kept in the data but carry no loss; steerlm cuts them to seqLen and trains the part that fits.",
      ...(tokenizerAddsBos(plan.model) === null
        ? [
            "The job could not read the model's tokenizer, so `data.add_bos` is true: NeMo RL then puts the tokenizer's BOS before every conversation. For a tokenizer that adds none (GPT-2's, SmolLM2's) set it false, as steerlm and TRL encode.",
          ]
        : []),
    ],
  };
}

function launch(plan: JobPlan, shape: Shape): Launch {
  if (shape.batch === null) return unsplittable(plan, shape);
  const micro =
    shape.batch.perDevice === plan.cfg.batchSize
      ? ""
      : ` policy.train_micro_batch_size=${shape.batch.perDevice} sft.val_micro_batch_size=${shape.batch.perDevice}`;
  const size =
    shape.gpus * shape.nodes === 1
      ? ""
      : ` cluster.gpus_per_node=${shape.gpus} cluster.num_nodes=${shape.nodes}`;
  const command = `bash <this folder>/run.sh${size}${micro}`;
  if (shape.nodes === 1) {
    return {
      title: shape.title,
      commands: ["cd nemo-rl", command],
      note: shape.gpus > 1 ? "Ray starts on this machine." : undefined,
    };
  }
  return {
    title: shape.title,
    commands: [
      "cd nemo-rl   # Slurm, with NeMo RL's ray.sub (docs/cluster.md)",
      `COMMAND="${command}" CONTAINER=<nemo-rl image> MOUNTS="$PWD:$PWD,<this folder>:<this folder>" \\`,
      `  sbatch --nodes=${shape.nodes} --gres=gpu:${shape.gpus} --account=<account> --partition=<partition> --time=<time> ray.sub`,
    ],
  };
}
