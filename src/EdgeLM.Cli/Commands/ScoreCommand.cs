using System.Globalization;
using System.Text.Json;
using EdgeLM.Evaluation;
using EdgeLM.Formats;

namespace EdgeLM.Cli.Commands;

internal sealed class ScoreCommand : Command
{
    public override string Name => "score";
    public override string Summary => "AICAS 2025 preliminary score of candidates against the original model";
    // Command.Help() has no footer, so the formula rides on the usage text.
    public override string Usage => "edgelm score --baseline EVAL.json,BENCH.json --candidate [NAME=]EVAL.json,BENCH.json ... --p-min X [--p-max X] [-o FILE]" + FormulaText;

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--baseline", null, "FILES", "the original model: its eval results.json and bench JSON, comma-separated"),
        new("--candidate", null, "[NAME=]FILES", "an optimized model the same way (repeatable)"),
        new("--p-min", null, "X|FILE", "lowest acceptable average accuracy: a number or an eval results.json"),
        new("--p-max", null, "X|FILE", "accuracy at which the accuracy term reaches 1", "the baseline's accuracy"),
        new("--metric", null, "NAME", "results.json metric averaged over tasks", "acc,none"),
        new("--output", "-o", "FILE", "write the scores as JSON"),
    ];

    private static string FormulaText => string.Join(Environment.NewLine,
        "",
        "score = 0.4 A + 0.2 M + 0.2 Pf + 0.2 D, each term divided by the best candidate's (when that best is positive):",
        "  A  = (P - P_min) / (P_max - P_min), 1 when P >= P_max, negative below P_min (P: mean accuracy over the tasks)",
        "  M  = 1 - M_opt / M_ori (peak memory),  Pf = 1 - T_ori / T_opt,  D = 1 - T_ori / T_opt (T: tokens/s)",
        "NOTE: the published AICAS 2025 formula text could not be found; this is the form stated in EdgeLM's issue 5.",
        "Bench JSON fields (top level or under \"bench\"): prefill_tokens_per_second, decode_tokens_per_second, peak_memory_bytes.");

    public override int Run(ParsedArgs a, CancellationToken cancel)
    {
        string metric = a.Get("--metric") ?? "acc,none";
        var baseline = ReadEntry(a.Require("--baseline"), "baseline", metric);
        var candidates = a.GetAll("--candidate").Select((spec, i) => ReadEntry(spec, $"candidate{i + 1}", metric)).ToArray();
        if (candidates.Length == 0) throw new UsageException("give at least one --candidate");
        double pMin = Threshold(a.Require("--p-min"), "--p-min", metric);
        double pMax = a.Get("--p-max") is { } pm ? Threshold(pm, "--p-max", metric) : baseline.Accuracy;
        var scores = AicasScore.Score(baseline, candidates, pMin, pMax);

        var w = Console.Out;
        w.WriteLine(string.Create(CultureInfo.InvariantCulture, $"baseline {baseline.Name}: accuracy {baseline.Accuracy:F4}; P_min {pMin:F4}, P_max {pMax:F4}"));
        w.WriteLine($"{"candidate",-24} {"accuracy",9} {"A",8} {"M",8} {"prefill",8} {"decode",8} {"score",8}");
        foreach (var s in scores)
            w.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{s.Name,-24} {s.AverageAccuracy,9:F4} {s.Normalized.Accuracy,8:F4} {s.Normalized.Memory,8:F4} {s.Normalized.Prefill,8:F4} {s.Normalized.Decode,8:F4} {s.Score,8:F4}"));

        if (a.Get("--output") is { } output)
        {
            AtomicFile.Write(output, stream =>
            {
                using var j = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
                j.WriteStartObject();
                j.WriteString("formula", "0.4*accuracy + 0.2*memory + 0.2*prefill + 0.2*decode, terms normalized by the best candidate (AICAS 2025 preliminary, as stated in EdgeLM issue 5)");
                j.WriteNumber("p_min", pMin);
                j.WriteNumber("p_max", pMax);
                j.WriteString("baseline", baseline.Name);
                j.WriteStartArray("candidates");
                foreach (var s in scores)
                {
                    j.WriteStartObject();
                    j.WriteString("name", s.Name);
                    j.WriteNumber("accuracy", s.AverageAccuracy);
                    WriteTerms(j, "raw", s.Raw);
                    WriteTerms(j, "normalized", s.Normalized);
                    j.WriteNumber("score", s.Score);
                    j.WriteEndObject();
                }
                j.WriteEndArray();
                j.WriteEndObject();
            });
            Console.Error.WriteLine($"wrote {output}");
        }
        return 0;
    }

    private static void WriteTerms(Utf8JsonWriter j, string name, ScoreTerms t)
    {
        j.WriteStartObject(name);
        j.WriteNumber("accuracy", t.Accuracy);
        j.WriteNumber("memory", t.Memory);
        j.WriteNumber("prefill", t.Prefill);
        j.WriteNumber("decode", t.Decode);
        j.WriteEndObject();
    }

    private static double Threshold(string value, string option, string metric)
    {
        if (double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && double.IsFinite(v)) return v;
        if (!File.Exists(value)) throw new UsageException($"{option} expects a number or an eval results.json, got '{value}'");
        using var doc = ParseFile(value);
        return AicasScore.AverageAccuracy(doc.RootElement, value, metric);
    }

    /// <summary>NAME=a.json,b.json: whichever file has "results" gives the accuracy, whichever has the bench fields the speeds.</summary>
    private static ScoreEntry ReadEntry(string spec, string fallbackName, string metric)
    {
        string name = fallbackName, files = spec;
        int eq = spec.IndexOf('=');
        if (eq > 0) { name = spec[..eq]; files = spec[(eq + 1)..]; }
        double? accuracy = null;
        BenchNumbers? bench = null;
        foreach (var path in files.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!File.Exists(path)) throw new FileNotFoundException($"{name}: file not found: {path}", path);
            using var doc = ParseFile(path);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path}: expected a JSON object");
            if (root.TryGetProperty("results", out _)) accuracy = AicasScore.AverageAccuracy(root, path, metric);
            if (root.TryGetProperty("bench", out _) || root.TryGetProperty("prefill_tokens_per_second", out _)) bench = AicasScore.ReadBench(root, path);
            if (eq <= 0 && name == fallbackName) name = Path.GetFileNameWithoutExtension(path);
        }
        if (accuracy is null) throw new InvalidDataException($"{name}: none of '{files}' is an eval results.json (no \"results\")");
        if (bench is null) throw new InvalidDataException($"{name}: none of '{files}' is a bench JSON (no \"prefill_tokens_per_second\")");
        return new ScoreEntry(name, accuracy.Value, bench);
    }

    private static JsonDocument ParseFile(string path)
    {
        var info = new FileInfo(path);
        if (info.Length > 64 << 20) throw new InvalidDataException($"{path}: {info.Length} bytes is too large for a results file");
        try { return JsonDocument.Parse(File.ReadAllBytes(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message})"); }
    }
}
