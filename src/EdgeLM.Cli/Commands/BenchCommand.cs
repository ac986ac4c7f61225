using System.Globalization;
using EdgeLM.Benchmarking;
using EdgeLM.Inference;

namespace EdgeLM.Cli.Commands;

/// <summary>
/// llama-bench for EdgeLM: prompt-processing (pp) and token-generation (tg) throughput for every combination of
/// the given sizes and thread counts, as a markdown table on standard output and optionally JSON / CSV files.
/// </summary>
internal sealed class BenchCommand : Command
{
    public override string Name => "bench";
    public override string Summary => "measure prompt and generation speed like llama-bench (pp N / tg N, tokens/s)";
    public override string Usage => "edgelm bench -m MODEL [-p 512] [-n 128] [-t 1,2] [-r 5] [--json FILE] [--csv FILE] [--kv f32|f16] [--profile] [--bandwidth]\n"
        + "       edgelm bench --scenario optimum -m MODEL [--batch-size 1] [--sequence-length 256] [--new-tokens 100] [--iterations 10] [--duration 10] [--json FILE]";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelOptions.Model,
        new("--n-prompt", "-p", "N[,N...]", "prompt sizes: pp N processes N random tokens as one batch; 0 skips", "512"),
        new("--n-gen", "-n", "N[,N...]", "generation sizes: tg N decodes N tokens one at a time; 0 skips", "128"),
        new("--threads", "-t", "N[,N...]", "thread counts", "physical cores"),
        new("--repetitions", "-r", "N", "timed repetitions of each test (after one warm-up)", "5"),
        new("--kv", null, "TYPE", "KV cache type: f32 or f16", "f32"),
        new("--json", null, "FILE", "also write the results as JSON (one object per test)"),
        new("--csv", null, "FILE", "also write the results as CSV (one row per test)"),
        new("--seed", null, "N", "seed of the random token ids", "1234 (optimum: 42)"),
        new("--scenario", null, "NAME", "llama (llama-bench's pp/tg tests) or optimum (optimum-benchmark's text-generation inference scenario)", "llama"),
        new("--batch-size", null, "N", "optimum: sequences per run", "1"),
        new("--sequence-length", null, "N", "optimum: random prompt tokens per sequence", "256"),
        new("--new-tokens", null, "N", "optimum: tokens generated per sequence (greedy, no stop at EOS)", "100"),
        new("--iterations", null, "N", "optimum: minimum timed runs of each session", "10"),
        new("--duration", null, "SECONDS", "optimum: minimum time of each session", "10"),
        new("--warmup-runs", null, "N", "optimum: two-token generates after the first generate", "10"),
        new("--profile", null, null, "print where the time goes (per part of the forward pass) after each test, on standard error"),
        new("--bandwidth", null, null, "measure the memory read bandwidth at each thread count first, and say how close each tg test comes to it"),
    ];

    public override int Run(ParsedArgs a, CancellationToken cancel)
    {
        switch ((a.Get("--scenario") ?? "llama").ToLowerInvariant())
        {
            case "llama": break;
            case "optimum": return RunOptimum(a, cancel);
            case var other: throw new UsageException($"--scenario expects llama or optimum, got '{other}'");
        }
        foreach (var name in OptimumOnly)
            if (a.Has(name)) throw new UsageException($"{name} belongs to --scenario optimum");
        var settings = ParseSettings(a);
        using var model = ModelOptions.Load(a);
        var info = BenchModelInfo.From(model);
        var cpu = CpuInfo.Current;
        var tests = BenchTest.Expand(settings.PromptSizes, settings.GenSizes, settings.Threads);
        if (tests.Count == 0) throw new UsageException("nothing to run: every -p and -n size is 0");
        int longest = tests.Max(t => t.Tokens);
        if (longest > model.Config.ContextLength)
            throw new ArgumentException($"a test of {longest} tokens does not fit the model's context of {model.Config.ContextLength}");

        var stdout = Console.Out;
        bool showKv = settings.Options.KvCacheType != KvCacheType.F32;
        Console.Error.WriteLine($"cpu: {cpu.Summary}");
        var bandwidth = new Dictionary<int, ReadBandwidth>();
        if (settings.Bandwidth && !tests.Any(t => t.GenTokens > 0))
            Console.Error.WriteLine("--bandwidth: no tg test to hold against the memory bandwidth (-n 0), so none was measured");
        else if (settings.Bandwidth)
        {
            foreach (int threads in tests.Where(t => t.GenTokens > 0).Select(t => t.Threads).Distinct())
                bandwidth[threads] = MemoryBandwidth.MeasureRead(threads);
            Console.Error.WriteLine($"memory read bandwidth ({MemoryBandwidth.DefaultBytes >> 20} MiB, median of {MemoryBandwidth.DefaultPasses} passes, best in brackets): "
                + string.Join(", ", bandwidth.Select(b => string.Create(CultureInfo.InvariantCulture,
                    $"{b.Key} thread{(b.Key == 1 ? "" : "s")} {b.Value.Median / 1e9:F1} GB/s ({b.Value.Best / 1e9:F1})"))));
        }
        stdout.WriteLine(BenchReport.MarkdownHeader(showKv));
        stdout.Flush();
        var results = new List<BenchResult>();
        foreach (var test in tests)
        {
            var profile = settings.Profile ? new SessionProfile() : null;
            var result = BenchRunner.Run(model, test, settings.Options with { Profile = profile }, cancel);
            if (bandwidth.TryGetValue(test.Threads, out var measured)) result = result with { ReadBandwidthBytesPerSecond = measured.Median };
            results.Add(result);
            stdout.WriteLine(BenchReport.MarkdownRow(info, result, showKv));
            stdout.Flush();
            if (profile is not null) Console.Error.Write($"{test.Name} t={test.Threads} {profile}");
        }
        var (version, commit) = BenchReport.EngineVersion();
        stdout.WriteLine();
        stdout.WriteLine($"edgelm {version} ({commit}); peak RSS {results.Max(r => r.PeakRssBytes) / 1024.0 / 1024.0:F1} MiB");
        if (settings.Bandwidth)
            foreach (var r in results)
                if (BenchReport.BandwidthLine(r) is { } line) stdout.WriteLine(line);

        if (settings.JsonPath is { } json) BenchReport.WriteJsonFile(json, info, cpu, results);
        if (settings.CsvPath is { } csv) BenchReport.WriteCsvFile(csv, info, cpu, results);
        return 0;
    }

    private static readonly string[] OptimumOnly = ["--batch-size", "--sequence-length", "--new-tokens", "--iterations", "--duration", "--warmup-runs"];
    private static readonly string[] LlamaOnly = ["--n-prompt", "--n-gen", "--repetitions", "--csv", "--bandwidth"];

    private static int RunOptimum(ParsedArgs a, CancellationToken cancel)
    {
        var options = ParseOptimumOptions(a);
        string path = a.Require("--model");
        string? json = a.Get("--json");
        var err = Console.Error;
        err.WriteLine($"cpu: {CpuInfo.Current.Summary}");
        err.WriteLine($"optimum scenario: batch {options.BatchSize}, sequence {options.SequenceLength}, new tokens {options.NewTokens}, " +
                      $"at least {options.Iterations} iterations and {options.DurationSeconds.ToString(CultureInfo.InvariantCulture)} s per session");
        var result = OptimumBenchmark.Run(path, () => Models.ModelLoader.Load(path), options, progress: phase => err.WriteLine($"  {phase} ..."), cancel: cancel);
        if (result.Batching == OptimumBatching.Sequential && options.BatchSize > 1)
            err.WriteLine($"note: the {options.BatchSize} sequences ran one after another (no batched forward pass yet); the report says \"batching\": \"sequential\"");
        Console.Out.WriteLine(OptimumReport.Summary(result));
        if (json != null)
        {
            OptimumReport.WriteJsonFile(json, result);
            err.WriteLine($"wrote {json}");
        }
        return 0;
    }

    /// <summary>The optimum scenario's settings, validated before the model loads.</summary>
    internal static OptimumOptions ParseOptimumOptions(ParsedArgs a)
    {
        a.Require("--model");
        foreach (var name in LlamaOnly)
            if (a.Has(name)) throw new UsageException($"{name} belongs to the llama scenario, not --scenario optimum");
        var threads = IntList(a, "--threads", [CpuInfo.Current.PhysicalCores], min: 1, max: 1024);
        if (threads.Count != 1) throw new UsageException("--scenario optimum takes one thread count");
        double duration = 10;
        if (a.Get("--duration") is { } d && (!double.TryParse(d, NumberStyles.Float, CultureInfo.InvariantCulture, out duration) || !(duration >= 0) || duration > 86_400))
            throw new UsageException($"--duration expects seconds between 0 and 86400, got '{d}'");
        var options = new OptimumOptions
        {
            BatchSize = a.Int("--batch-size", 1, 1, 4096),
            SequenceLength = a.Int("--sequence-length", 256, 1, 1_000_000),
            NewTokens = a.Int("--new-tokens", 100, 2, 1_000_000),
            Iterations = a.Int("--iterations", 10, 1, 1_000_000),
            DurationSeconds = duration,
            WarmupRuns = a.Int("--warmup-runs", 10, 0, 10_000),
            Threads = threads[0],
            KvCacheType = ParseKv(a),
            Seed = a.ULong("--seed") ?? 42,
        };
        try { options.Validate(); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        return options;
    }

    private static KvCacheType ParseKv(ParsedArgs a) => (a.Get("--kv") ?? "f32").ToLowerInvariant() switch
    {
        "f32" => KvCacheType.F32,
        "f16" => KvCacheType.F16,
        var other => throw new UsageException($"--kv expects f32 or f16, got '{other}'"),
    };

    internal sealed record Settings(IReadOnlyList<int> PromptSizes, IReadOnlyList<int> GenSizes, IReadOnlyList<int> Threads,
        BenchOptions Options, string? JsonPath, string? CsvPath, bool Profile = false, bool Bandwidth = false);

    /// <summary>Everything but the model, validated before the (slow) model load so a typo fails at once.</summary>
    internal static Settings ParseSettings(ParsedArgs a)
    {
        a.Require("--model");
        var prompts = IntList(a, "--n-prompt", [512], min: 0);
        var gens = IntList(a, "--n-gen", [128], min: 0);
        var threads = IntList(a, "--threads", [CpuInfo.Current.PhysicalCores], min: 1, max: 1024);
        var kv = (a.Get("--kv") ?? "f32").ToLowerInvariant() switch
        {
            "f32" => KvCacheType.F32,
            "f16" => KvCacheType.F16,
            var other => throw new UsageException($"--kv expects f32 or f16, got '{other}'"),
        };
        var options = new BenchOptions
        {
            Repetitions = a.Int("--repetitions", 5, 1, 10_000),
            KvCacheType = kv,
            Seed = a.ULong("--seed") ?? 1234,
        };
        if (prompts.All(p => p == 0) && gens.All(g => g == 0)) throw new UsageException("nothing to run: every -p and -n size is 0");
        return new Settings(prompts, gens, threads, options, a.Get("--json"), a.Get("--csv"), a.Flag("--profile"), a.Flag("--bandwidth"));
    }

    /// <summary>
    /// A comma-separated list of whole numbers. Repeating the option adds to the list (-p 128 -p 512), as in
    /// llama-bench; the default applies only when the option is absent.
    /// </summary>
    internal static IReadOnlyList<int> IntList(ParsedArgs a, string name, int[] fallback, int min, int max = 1_000_000)
    {
        var raw = a.GetAll(name);
        if (raw.Count == 0) return fallback;
        var values = new List<int>();
        foreach (string text in raw)
        {
            foreach (string item in text.Split(','))
            {
                string s = item.Trim();
                if (s.Length == 0) throw new UsageException($"{name} has an empty item in '{text}'");
                if (!int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int v))
                    throw new UsageException($"{name} expects whole numbers separated by commas, got '{s}' in '{text}'");
                if (v < min || v > max) throw new UsageException($"{name} values must be between {min} and {max}, got {v}");
                values.Add(v);
            }
        }
        return values;
    }
}
