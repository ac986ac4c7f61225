using System.Globalization;
using EdgeLM.Benchmarking;
using EdgeLM.Compression;
using EdgeLM.Evaluation;
using EdgeLM.Pipeline;
using EdgeLM.Synthetic;
using EdgeLM.Tensors;
using EdgeLM.Tokenization;

namespace EdgeLM.Cli.Commands;

/// <summary>
/// The challenge in one command: candidates from a base model (baseline, q8_0, q4_k_m, q4_0), each benched with
/// optimum-benchmark's scenario, evaluated like lm-evaluation-harness where data exists and scored with the AICAS
/// formula, then report.json, report.html and a summary table.
/// </summary>
internal sealed class PipelineCommand : Command
{
    /// <summary>The defaults keep the whole run on a synthetic Qwen2.5-0.5B to minutes on 2 cores.</summary>
    internal static readonly (int Sequence, int NewTokens, int Iterations, double Duration, int Warmup, int Limit) Standard = (32, 8, 2, 1, 0, 20);
    internal static readonly (int Sequence, int NewTokens, int Iterations, double Duration, int Warmup, int Limit) Quick = (16, 4, 1, 0, 0, 3);

    public override string Name => "pipeline";
    public override string Summary => "quantize, bench, evaluate and score candidates of a model; writes report.html and report.json";
    public override string Usage => "edgelm pipeline [-m MODEL] [-o OUTDIR] [--tasks arc_challenge,hellaswag,piqa] [--limit N] [--data DIR] [--quick]";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--model", "-m", "MODEL", "base model (GGUF file or Hugging Face folder) in its original precision", "synthetic Qwen2.5-0.5B f16, made once and cached"),
        new("--output", "-o", "DIR", "folder for report.json and report.html", "edgelm-pipeline"),
        new("--tasks", null, "LIST", "comma-separated tasks: " + string.Join(", ", EvalTask.Names), "arc_challenge,hellaswag,piqa"),
        new("--limit", null, "N", "items per task (below 1: a fraction of the split)", $"{Standard.Limit}; --quick {Quick.Limit}"),
        new("--data", null, "DIR", "dataset folder DIR/<task>/<file>", "../shared/datasets beside the repository"),
        new("--quick", null, null, $"smaller bench and evaluation (sequence {Quick.Sequence}, {Quick.NewTokens} new tokens, {Quick.Iterations} iterations, {Quick.Duration} s, limit {Quick.Limit})"),
        new("--types", null, "LIST", "quantized candidates, comma-separated llama.cpp file types", "q8_0,q4_k_m,q4_0"),
        new("--prune-blocks", null, "N", "blocks the pruned + q4_k_m candidate drops with ShortGPT; 0 = no such candidate", "one in eight"),
        new("--work", null, "DIR", "where quantized candidates (and the synthetic model) are kept and reused", "~/.cache/edgelm"),
        new("--p-max", null, "P", "accuracy that earns the full accuracy term", "the baseline's average accuracy"),
        new("--p-min", null, "P", "accuracy at which the accuracy term is 0", "chance level of the tasks (P_max − 0.1 if not below P_max)"),
        new("--batch-size", null, "N", "bench: sequences per run", "1"),
        new("--sequence-length", null, "N", "bench: prompt tokens", $"{Standard.Sequence}; --quick {Quick.Sequence}"),
        new("--new-tokens", null, "N", "bench: generated tokens", $"{Standard.NewTokens}; --quick {Quick.NewTokens}"),
        new("--iterations", null, "N", "bench: minimum runs per session", $"{Standard.Iterations}; --quick {Quick.Iterations}"),
        new("--duration", null, "SECONDS", "bench: minimum time per session", $"{Standard.Duration}; --quick {Quick.Duration}"),
        ModelOptions.Threads, ModelOptions.Tokenizer,
    ];

    public override int Run(ParsedArgs a, CancellationToken cancel)
    {
        var defaults = a.Flag("--quick") ? Quick : Standard;
        var tasks = (a.Get("--tasks") ?? "arc_challenge,hellaswag,piqa").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (tasks.Length == 0) throw new UsageException("--tasks lists no task");
        foreach (var t in tasks)
        {
            try { EvalTask.Get(t); }
            catch (ArgumentException e) { throw new UsageException(e.Message); }
        }
        double limit = defaults.Limit;
        if (a.Get("--limit") is { } ls && (!double.TryParse(ls, NumberStyles.Float, CultureInfo.InvariantCulture, out limit) || !(limit > 0) || double.IsInfinity(limit)))
            throw new UsageException($"--limit expects a positive number, got '{ls}'");
        LlamaFileType[] types;
        try
        {
            types = (a.Get("--types") ?? "q8_0,q4_k_m,q4_0").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(LlamaFileTypes.Parse).Distinct().ToArray();
        }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        double duration = defaults.Duration;
        if (a.Get("--duration") is { } ds && (!double.TryParse(ds, NumberStyles.Float, CultureInfo.InvariantCulture, out duration) || !(duration >= 0) || duration > 86_400))
            throw new UsageException($"--duration expects seconds between 0 and 86400, got '{ds}'");
        int threads = ModelOptions.ThreadCount(a);
        var bench = new OptimumOptions
        {
            BatchSize = a.Int("--batch-size", 1, 1, 4096),
            SequenceLength = a.Int("--sequence-length", defaults.Sequence, 1, 1_000_000),
            NewTokens = a.Int("--new-tokens", defaults.NewTokens, 2, 1_000_000),
            Iterations = a.Int("--iterations", defaults.Iterations, 1, 1_000_000),
            DurationSeconds = duration,
            WarmupRuns = defaults.Warmup,
            Threads = threads,
        };
        double? pMax = a.Has("--p-max") ? a.Float("--p-max", 0) : null, pMin = a.Has("--p-min") ? a.Float("--p-min", 0) : null;
        if (pMax is double mx && pMin is double mn && !(mx > mn)) throw new UsageException($"--p-max ({mx}) must be greater than --p-min ({mn})");

        var err = Console.Error;
        string work = a.Get("--work") ?? Locations.CacheFolder;
        Directory.CreateDirectory(work);
        string? tokenizerPath = a.Get("--tokenizer");
        string baseModel = a.Get("--model") ?? SyntheticBase(work, ref tokenizerPath, err);
        string output = a.Get("--output") ?? "edgelm-pipeline";

        var options = new PipelineOptions
        {
            BaseModelPath = baseModel,
            OutputDir = output,
            WorkDir = work,
            Tasks = tasks,
            Limit = limit,
            DataDirs = EvalCommand.DataDirectories(a.Get("--data")),
            QuantTypes = types,
            PruneBlocks = a.Has("--prune-blocks") ? a.Int("--prune-blocks", 0, 0) : null,
            Bench = bench,
            Threads = threads,
            TokenizerPath = a.Get("--tokenizer"),
            PMax = pMax,
            PMin = pMin,
        };
        err.WriteLine($"EdgeLM {Program.Version} pipeline: base {baseModel}, candidates baseline + {string.Join(", ", types.Select(LlamaFileTypes.Name))}, {threads} threads");
        var result = PipelineRunner.Run(options, line => { err.WriteLine(line); err.Flush(); }, cancel);

        var o = Console.Out;
        o.WriteLine();
        PrintSummary(result, o);
        o.WriteLine();
        o.WriteLine($"wrote {Path.Combine(output, "report.html")} and {Path.Combine(output, "report.json")} ({result.Elapsed.TotalSeconds.ToString("F0", CultureInfo.InvariantCulture)} s)");
        return 0;
    }

    /// <summary>The demo's synthetic Qwen2.5-0.5B (same file name, so the two share the cache), with the real tokenizer when ../shared has it.</summary>
    private static string SyntheticBase(string dir, ref string? tokenizerPath, TextWriter err)
    {
        tokenizerPath ??= Locations.QwenTokenizer;
        const string preset = "qwen2.5-0.5b";
        var type = GgmlType.F16;
        string file = Path.Combine(dir, $"synthetic-{preset}-{type.ToString().ToLowerInvariant()}-seed1{(tokenizerPath != null ? "-qwentok" : "")}.gguf");
        if (File.Exists(file))
        {
            err.WriteLine($"base model: cached synthetic {file}");
            return file;
        }
        var config = ModelPresets.Get(preset);
        err.WriteLine($"base model: writing synthetic {config.Name} ({SyntheticModel.ParameterCount(config):N0} parameters, {type}) to {file} ...");
        err.WriteLine(tokenizerPath != null ? $"tokenizer: {tokenizerPath}" : "tokenizer: byte-level fallback (../shared/tokenizers/qwen not found)");
        var tokenizer = tokenizerPath != null ? BpeTokenizer.FromTokenizerJson(tokenizerPath) : null;
        SyntheticModel.WriteGguf(file, config, type, seed: 1, tokenizer, new ConsoleProgress("synth"));
        return file;
    }

    internal static void PrintSummary(PipelineResult r, TextWriter w)
    {
        var tasks = r.Options.Tasks.Distinct().ToList();
        var header = new List<string> { "candidate", "size MB", "bits/w", "prefill t/s", "decode t/s", "peak MB" };
        header.AddRange(tasks.Select(t => t + " acc"));
        header.Add("avg acc");
        header.Add("score");
        var rows = r.Candidates.Select(c =>
        {
            var cells = new List<string>
            {
                c.Name, F(c.FileBytes / 1e6, "F0"), F(c.BitsPerWeight, "F2"), F(c.Bench.PrefillTokensPerSecond, "F1"),
                F(c.Bench.DecodeTokensPerSecond, "F2"), F(c.Bench.PeakMemoryBytes / 1e6, "F0"),
            };
            cells.AddRange(tasks.Select(t => c.Tasks.FirstOrDefault(x => x.Task == t) is { Evaluated: true } x ? F(x.Acc!.Value, "F4") : "no data"));
            cells.Add(c.AverageAccuracy is double acc ? F(acc, "F4") : "n/a");
            cells.Add(c.Kind == "baseline" ? "baseline" : c.Score is { } s ? F(s.Score, "F4") : "n/a");
            return cells;
        }).ToList();
        var widths = header.Select((h, i) => Math.Max(h.Length, rows.Select(x => x[i].Length).DefaultIfEmpty(0).Max())).ToArray();
        w.WriteLine("| " + string.Join(" | ", header.Select((h, i) => i == 0 ? h.PadRight(widths[i]) : h.PadLeft(widths[i]))) + " |");
        w.WriteLine("|" + string.Join("|", widths.Select((wd, i) => i == 0 ? new string('-', wd + 2) : new string('-', wd + 1) + ":")) + "|");
        foreach (var row in rows)
            w.WriteLine("| " + string.Join(" | ", row.Select((c, i) => i == 0 ? c.PadRight(widths[i]) : c.PadLeft(widths[i]))) + " |");
        foreach (var n in r.Notes) w.WriteLine(n);
        if (r.PMax is double pMax && r.PMin is double pMin)
            w.WriteLine($"score: P_max {F(pMax, "F4")} ({r.PMaxSource}), P_min {F(pMin, "F4")} ({r.PMinSource})");
    }

    private static string F(double v, string format) => v.ToString(format, CultureInfo.InvariantCulture);
}
