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
    public override string Usage => "edgelm bench -m MODEL [-p 512] [-n 128] [-t 1,2] [-r 5] [--json FILE] [--csv FILE] [--kv f32|f16] [--profile]";

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
        new("--seed", null, "N", "seed of the random token ids", "1234"),
        new("--profile", null, null, "print where the time goes (per part of the forward pass) after each test, on standard error"),
    ];

    public override int Run(ParsedArgs a, CancellationToken cancel)
    {
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
        stdout.WriteLine(BenchReport.MarkdownHeader(showKv));
        stdout.Flush();
        var results = new List<BenchResult>();
        foreach (var test in tests)
        {
            var profile = settings.Profile ? new SessionProfile() : null;
            var result = BenchRunner.Run(model, test, settings.Options with { Profile = profile }, cancel);
            results.Add(result);
            stdout.WriteLine(BenchReport.MarkdownRow(info, result, showKv));
            stdout.Flush();
            if (profile is not null) Console.Error.Write($"{test.Name} t={test.Threads} {profile}");
        }
        var (version, commit) = BenchReport.EngineVersion();
        stdout.WriteLine();
        stdout.WriteLine($"edgelm {version} ({commit}); peak RSS {results.Max(r => r.PeakRssBytes) / 1024.0 / 1024.0:F1} MiB");

        if (settings.JsonPath is { } json) BenchReport.WriteJsonFile(json, info, cpu, results);
        if (settings.CsvPath is { } csv) BenchReport.WriteCsvFile(csv, info, cpu, results);
        return 0;
    }

    internal sealed record Settings(IReadOnlyList<int> PromptSizes, IReadOnlyList<int> GenSizes, IReadOnlyList<int> Threads,
        BenchOptions Options, string? JsonPath, string? CsvPath, bool Profile = false);

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
        return new Settings(prompts, gens, threads, options, a.Get("--json"), a.Get("--csv"), a.Flag("--profile"));
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
