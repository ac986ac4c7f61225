using System.Diagnostics;
using EdgeLM.Inference;
using EdgeLM.Models;

namespace EdgeLM.Benchmarking;

/// <summary>Settings of optimum-benchmark's inference scenario for text generation (its input_shapes and InferenceConfig).</summary>
public sealed record OptimumOptions
{
    public int BatchSize { get; init; } = 1;
    public int SequenceLength { get; init; } = 256;
    /// <summary>max_new_tokens = min_new_tokens: every run generates exactly this many tokens per sequence.</summary>
    public int NewTokens { get; init; } = 100;
    /// <summary>Timed runs continue until both at least this many iterations and <see cref="DurationSeconds"/> have passed.</summary>
    public int Iterations { get; init; } = 10;
    public double DurationSeconds { get; init; } = 10;
    /// <summary>Two-token generates after the first (tracked) generate, optimum's warmup_runs.</summary>
    public int WarmupRuns { get; init; } = 10;
    public int Threads { get; init; } = CpuInfo.Current.PhysicalCores;
    public KvCacheType KvCacheType { get; init; } = KvCacheType.F32;
    public ulong Seed { get; init; } = 42;

    public void Validate()
    {
        if (BatchSize < 1 || BatchSize > 4096) throw new ArgumentException($"batch size {BatchSize} must be between 1 and 4096");
        if (SequenceLength < 1) throw new ArgumentException($"sequence length {SequenceLength} must be at least 1");
        // decode volume is batch x (new_tokens - 1): one token alone leaves nothing to call decoding
        if (NewTokens < 2) throw new ArgumentException($"new tokens {NewTokens} must be at least 2 (the first token comes from prefill)");
        if (Iterations < 1) throw new ArgumentException($"iterations {Iterations} must be at least 1");
        if (!(DurationSeconds >= 0) || double.IsInfinity(DurationSeconds)) throw new ArgumentException($"duration {DurationSeconds} must be a finite number of seconds ≥ 0");
        if (WarmupRuns < 0) throw new ArgumentException($"warm-up runs {WarmupRuns} must not be negative");
        if (Threads < 1) throw new ArgumentException($"thread count {Threads} must be at least 1");
    }
}

/// <summary>One target of the report (optimum-benchmark's BenchmarkMeasurements): latency, throughput and memory.</summary>
public sealed record OptimumMeasurement(OptimumLatency? Latency, string? ThroughputUnit, double? Throughput, long? MaxRamBytes);

public sealed record OptimumResult
{
    public required OptimumOptions Options { get; init; }
    public required string ModelPath { get; init; }
    public required string Batching { get; init; }
    public required OptimumMeasurement LoadModel { get; init; }
    public required OptimumMeasurement FirstGenerate { get; init; }
    public required OptimumMeasurement Prefill { get; init; }
    public required OptimumMeasurement Decode { get; init; }
    public required OptimumMeasurement PerToken { get; init; }
    public required OptimumMeasurement Generate { get; init; }
    /// <summary>Whether each memory value is the peak of its own phase (Linux) or of the whole process so far.</summary>
    public required bool MemoryPerPhase { get; init; }
    public required DateTimeOffset StartedAt { get; init; }

    /// <summary>Prompt tokens per second: batch × sequence length / mean prefill latency.</summary>
    public double PrefillTokensPerSecond => Prefill.Latency is { Mean: > 0 } l ? (double)Options.BatchSize * Options.SequenceLength / l.Mean : 0;
    public double DecodeTokensPerSecond => Decode.Throughput ?? 0;
    /// <summary>The highest resident memory seen in any phase.</summary>
    public long PeakMemoryBytes => new[] { LoadModel, Prefill, Generate, Decode }.Max(m => m.MaxRamBytes ?? 0);
}

/// <summary>
/// optimum-benchmark's inference scenario for text generation, run on EdgeLM: load the model (timed), make random
/// prompt ids, warm up (one tracked first generate, then two-token generates), then a prefill session (generates
/// of one token) and a generate session (generates of new-tokens tokens), each running until at least the
/// iterations count and the duration have both passed. decode = generate − mean prefill.
/// </summary>
public static class OptimumBenchmark
{
    public const string PrefillThroughputUnit = "samples/s", GenerateThroughputUnit = "samples/s", DecodeThroughputUnit = "tokens/s";

    public static OptimumResult Run(string modelPath, Func<LoadedModel> load, OptimumOptions options,
        BatchGeneratorFactory? generatorFactory = null, Action<string>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(load);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        generatorFactory ??= BatchGenerators.Create;
        var started = DateTimeOffset.UtcNow;

        // Garbage of earlier work (a previous candidate) must not count towards this model's peak.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        bool perPhase = PeakRss.TryReset();
        long t0 = Stopwatch.GetTimestamp();
        using var model = load();
        double loadSeconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        var loadModel = new OptimumMeasurement(OptimumLatency.FromValues([loadSeconds]), null, null, PeakRss.Read());

        if (options.SequenceLength + options.NewTokens - 1 > model.Config.ContextLength)
            throw new ArgumentException($"sequence length {options.SequenceLength} + {options.NewTokens} new tokens exceed the model's context of {model.Config.ContextLength}");
        using var generator = generatorFactory(model, options);
        var prompts = RandomPrompts(options, model.Config.VocabSize);
        int batch = options.BatchSize;

        progress?.Invoke("warm-up");
        cancel.ThrowIfCancellationRequested();
        long tf = Stopwatch.GetTimestamp();
        generator.Generate(prompts, options.NewTokens, null, cancel);
        var firstGenerate = new OptimumMeasurement(OptimumLatency.FromValues([Stopwatch.GetElapsedTime(tf).TotalSeconds]), null, null, null);
        for (int i = 0; i < options.WarmupRuns; i++) generator.Generate(prompts, 2, null, cancel);

        progress?.Invoke("prefill");
        PeakRss.TryReset();
        var prefillValues = Session(options, () => generator.Generate(prompts, 1, null, cancel), cancel);
        long prefillRam = PeakRss.Read();
        var prefillLatency = OptimumLatency.FromValues(prefillValues);

        progress?.Invoke("generate");
        PeakRss.TryReset();
        var perToken = new List<double>();
        var stamps = new long[batch];
        void OnToken(int sequence, int step)
        {
            long now = Stopwatch.GetTimestamp();
            // Intervals between consecutive tokens of one sequence (logits-processor calls in optimum's tracker):
            // the first token of a sequence closes its prefill, not a token interval.
            if (step > 0) perToken.Add(Stopwatch.GetElapsedTime(stamps[sequence], now).TotalSeconds);
            stamps[sequence] = now;
        }
        var generateValues = Session(options, () => generator.Generate(prompts, options.NewTokens, OnToken, cancel), cancel);
        long generateRam = PeakRss.Read();
        var generateLatency = OptimumLatency.FromValues(generateValues);
        var decodeLatency = generateLatency.Minus(prefillLatency);

        double Throughput(OptimumLatency l, double volume) => l.Mean > 0 ? volume / l.Mean : 0;
        return new OptimumResult
        {
            Options = options,
            ModelPath = modelPath,
            Batching = generator.Batching,
            LoadModel = loadModel,
            FirstGenerate = firstGenerate,
            Prefill = new OptimumMeasurement(prefillLatency, PrefillThroughputUnit, Throughput(prefillLatency, batch), prefillRam),
            Generate = new OptimumMeasurement(generateLatency, GenerateThroughputUnit, Throughput(generateLatency, batch), generateRam),
            Decode = new OptimumMeasurement(decodeLatency, DecodeThroughputUnit, Throughput(decodeLatency, (double)batch * (options.NewTokens - 1)), generateRam),
            // optimum registers no per-token throughput: it is the decode throughput again
            PerToken = new OptimumMeasurement(OptimumLatency.FromValues(perToken), null, null, null),
            MemoryPerPhase = perPhase,
            StartedAt = started,
        };
    }

    /// <summary>optimum's latency session: run until elapsed ≥ duration and count ≥ iterations.</summary>
    internal static List<double> Session(OptimumOptions options, Action run, CancellationToken cancel)
    {
        var values = new List<double>();
        long start = Stopwatch.GetTimestamp();
        while (Stopwatch.GetElapsedTime(start).TotalSeconds < options.DurationSeconds || values.Count < options.Iterations)
        {
            cancel.ThrowIfCancellationRequested();
            long t = Stopwatch.GetTimestamp();
            run();
            values.Add(Stopwatch.GetElapsedTime(t).TotalSeconds);
        }
        return values;
    }

    /// <summary>Random token ids in [0, vocab), one row per sequence, the same for a given seed (optimum's InputGenerator draws random ids too).</summary>
    public static IReadOnlyList<int[]> RandomPrompts(OptimumOptions options, int vocabSize)
    {
        var rng = new Random(unchecked((int)options.Seed ^ (int)(options.Seed >> 32)));
        var prompts = new int[options.BatchSize][];
        for (int b = 0; b < prompts.Length; b++)
        {
            prompts[b] = new int[options.SequenceLength];
            for (int i = 0; i < prompts[b].Length; i++) prompts[b][i] = rng.Next(vocabSize);
        }
        return prompts;
    }
}
