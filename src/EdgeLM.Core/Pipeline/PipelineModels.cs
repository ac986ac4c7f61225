using EdgeLM.Benchmarking;
using EdgeLM.Compression;
using EdgeLM.Evaluation;

namespace EdgeLM.Pipeline;

public sealed record PipelineOptions
{
    /// <summary>The original-precision model every candidate is made from and compared against.</summary>
    public required string BaseModelPath { get; init; }
    /// <summary>Where report.json and report.html go.</summary>
    public required string OutputDir { get; init; }
    /// <summary>Where the quantized candidates are written (and reused when already there).</summary>
    public required string WorkDir { get; init; }
    public IReadOnlyList<string> Tasks { get; init; } = ["arc_challenge", "hellaswag", "piqa"];
    /// <summary>Items per task (lm-eval's --limit: below 1 a fraction); null = the whole split.</summary>
    public double? Limit { get; init; } = 100;
    /// <summary>Folders searched in order for DIR/&lt;task&gt;/&lt;file&gt;.</summary>
    public IReadOnlyList<string> DataDirs { get; init; } = [];
    public IReadOnlyList<LlamaFileType> QuantTypes { get; init; } = [LlamaFileType.MostlyQ8_0, LlamaFileType.MostlyQ4_K_M, LlamaFileType.MostlyQ4_0];
    public OptimumOptions Bench { get; init; } = new();
    public int Threads { get; init; } = CpuInfo.Current.PhysicalCores;
    /// <summary>
    /// Blocks the "pruned + 4-bit" candidate drops with ShortGPT before q4_k_m: null = one in eight (none below
    /// four blocks), 0 = no pruned candidate.
    /// </summary>
    public int? PruneBlocks { get; init; }
    /// <summary>Context of the evaluation session; items longer than this are cut from the left as lm-eval does.</summary>
    public int EvalContext { get; init; } = 2048;
    /// <summary>tokenizer.json to use instead of the models' own.</summary>
    public string? TokenizerPath { get; init; }
    public double? PMax { get; init; }
    public double? PMin { get; init; }
    public BatchGeneratorFactory? GeneratorFactory { get; init; }

    public void Validate()
    {
        ArgumentException.ThrowIfNullOrEmpty(BaseModelPath);
        ArgumentException.ThrowIfNullOrEmpty(OutputDir);
        ArgumentException.ThrowIfNullOrEmpty(WorkDir);
        if (Tasks.Count == 0) throw new ArgumentException("no tasks given");
        foreach (var t in Tasks) EvalTask.Get(t);
        if (Limit is double l && (!(l > 0) || double.IsInfinity(l))) throw new ArgumentException($"limit {l} must be a positive number");
        if (Threads < 1) throw new ArgumentException($"thread count {Threads} must be at least 1");
        if (EvalContext < 16) throw new ArgumentException($"evaluation context {EvalContext} must be at least 16 tokens");
        if (PMax is double max && PMin is double min && !(max > min)) throw new ArgumentException($"P_max ({max}) must be greater than P_min ({min})");
        foreach (var p in new[] { PMax, PMin })
            if (p is double v && !double.IsFinite(v)) throw new ArgumentException($"P_max and P_min must be finite numbers, got {v}");
        Bench.Validate();
    }
}

/// <summary>Accuracy of one candidate on one task, or why there is none.</summary>
public sealed record TaskOutcome(string Task, int Items, double? Acc, double? AccStderr, double? AccNorm, double? AccNormStderr, string? Skipped)
{
    public bool Evaluated => Skipped == null;
}

public sealed record CandidateResult
{
    public required string Name { get; init; }
    /// <summary>"baseline" (the original precision) or "quantized".</summary>
    public required string Kind { get; init; }
    public required string ModelPath { get; init; }
    public required string TypeName { get; init; }
    public required long FileBytes { get; init; }
    public required long ParameterCount { get; init; }
    public required double BitsPerWeight { get; init; }
    public required OptimumResult Bench { get; init; }
    public required IReadOnlyList<TaskOutcome> Tasks { get; init; }
    /// <summary>Mean acc over the tasks that were evaluated; null when none had data.</summary>
    public double? AverageAccuracy => Tasks.Where(t => t.Evaluated).Select(t => t.Acc!.Value).DefaultIfEmpty(double.NaN).Average() is var a && double.IsNaN(a) ? null : a;
    public ScoreResult? Score { get; init; }
}

public sealed record PipelineResult
{
    public required PipelineOptions Options { get; init; }
    public required IReadOnlyList<CandidateResult> Candidates { get; init; }
    /// <summary>Plain lines about what was skipped and why.</summary>
    public required IReadOnlyList<string> Notes { get; init; }
    public double? PMax { get; init; }
    public double? PMin { get; init; }
    public string? PMaxSource { get; init; }
    public string? PMinSource { get; init; }
    public required DateTimeOffset StartedAt { get; init; }
    public required TimeSpan Elapsed { get; init; }
}
