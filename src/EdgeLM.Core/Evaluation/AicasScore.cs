using System.Text.Json;

namespace EdgeLM.Evaluation;

/// <summary>Speed and memory of one model, as the bench command reports them.</summary>
/// <param name="PrefillTokensPerSecond">prompt processing throughput.</param>
/// <param name="DecodeTokensPerSecond">generation throughput.</param>
/// <param name="PeakMemoryBytes">peak resident memory of the run.</param>
public sealed record BenchNumbers(double PrefillTokensPerSecond, double DecodeTokensPerSecond, double PeakMemoryBytes);

public sealed record ScoreEntry(string Name, double Accuracy, BenchNumbers Bench);

public sealed record ScoreTerms(double Accuracy, double Memory, double Prefill, double Decode);

public sealed record ScoreResult(string Name, double AverageAccuracy, ScoreTerms Raw, ScoreTerms Normalized, double Score);

/// <summary>
/// The AICAS 2025 grand challenge preliminary score: 0.4 accuracy + 0.2 memory + 0.2 prefill + 0.2 decode, each term
/// divided by the best candidate's term. The published formula text could not be found; this implements the form
/// given in EdgeLM's issue 5, with T a throughput in tokens/s (so faster candidates score higher):
///   accuracy = (P - P_min) / (P_max - P_min), clipped to 1 at P ≥ P_max, negative below P_min;
///   memory   = 1 - M_opt / M_ori;   prefill = 1 - T_ori / T_opt;   decode = 1 - T_ori / T_opt.
/// </summary>
public static class AicasScore
{
    public const double AccuracyWeight = 0.4, MemoryWeight = 0.2, PrefillWeight = 0.2, DecodeWeight = 0.2;

    /// <summary>The raw (un-normalized) terms of one candidate against the baseline.</summary>
    public static ScoreTerms Terms(ScoreEntry baseline, ScoreEntry candidate, double pMin, double pMax)
    {
        if (!(pMax > pMin)) throw new ArgumentException($"P_max ({pMax}) must be greater than P_min ({pMin})");
        Check(baseline.Bench, baseline.Name);
        Check(candidate.Bench, candidate.Name);
        double p = candidate.Accuracy;
        double accuracy = p >= pMax ? 1.0 : (p - pMin) / (pMax - pMin);
        double memory = 1 - candidate.Bench.PeakMemoryBytes / baseline.Bench.PeakMemoryBytes;
        double prefill = 1 - baseline.Bench.PrefillTokensPerSecond / candidate.Bench.PrefillTokensPerSecond;
        double decode = 1 - baseline.Bench.DecodeTokensPerSecond / candidate.Bench.DecodeTokensPerSecond;
        return new ScoreTerms(accuracy, memory, prefill, decode);
    }

    /// <summary>
    /// Scores every candidate. Each term is divided by the best candidate's value of that term when that best value is
    /// positive; when no candidate improves on the baseline in a term (best ≤ 0) the raw terms are kept, so a
    /// regression is never turned into a reward by dividing two negatives.
    /// </summary>
    public static IReadOnlyList<ScoreResult> Score(ScoreEntry baseline, IReadOnlyList<ScoreEntry> candidates, double pMin, double pMax)
    {
        if (candidates.Count == 0) throw new ArgumentException("no candidates to score");
        var raw = candidates.Select(c => Terms(baseline, c, pMin, pMax)).ToArray();
        double bestAcc = raw.Max(t => t.Accuracy), bestMem = raw.Max(t => t.Memory),
            bestPre = raw.Max(t => t.Prefill), bestDec = raw.Max(t => t.Decode);
        var results = new ScoreResult[candidates.Count];
        for (int i = 0; i < candidates.Count; i++)
        {
            var r = raw[i];
            var n = new ScoreTerms(Normalize(r.Accuracy, bestAcc), Normalize(r.Memory, bestMem), Normalize(r.Prefill, bestPre), Normalize(r.Decode, bestDec));
            double score = AccuracyWeight * n.Accuracy + MemoryWeight * n.Memory + PrefillWeight * n.Prefill + DecodeWeight * n.Decode;
            results[i] = new ScoreResult(candidates[i].Name, candidates[i].Accuracy, r, n, score);
        }
        return results;
    }

    private static double Normalize(double value, double best) => best > 0 ? value / best : value;

    private static void Check(BenchNumbers b, string name)
    {
        if (!(b.PrefillTokensPerSecond > 0) || !(b.DecodeTokensPerSecond > 0) || !(b.PeakMemoryBytes > 0)
            || !double.IsFinite(b.PrefillTokensPerSecond) || !double.IsFinite(b.DecodeTokensPerSecond) || !double.IsFinite(b.PeakMemoryBytes))
            throw new ArgumentException($"{name}: prefill, decode and memory must be positive finite numbers");
    }

    /// <summary>The average of acc,none over the tasks of an eval results.json (lm-eval's or EdgeLM's).</summary>
    public static double AverageAccuracy(JsonElement results, string source, string metric = "acc,none")
    {
        if (!results.TryGetProperty("results", out var tasks) || tasks.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{source}: no 'results' object (expected an eval results.json)");
        double sum = 0;
        int n = 0;
        foreach (var task in tasks.EnumerateObject())
        {
            if (task.Value.ValueKind != JsonValueKind.Object || !task.Value.TryGetProperty(metric, out var v) || v.ValueKind != JsonValueKind.Number)
                throw new InvalidDataException($"{source}: task '{task.Name}' has no numeric '{metric}'");
            sum += v.GetDouble();
            n++;
        }
        if (n == 0) throw new InvalidDataException($"{source}: 'results' lists no task");
        return sum / n;
    }

    /// <summary>
    /// A bench JSON: {"prefill_tokens_per_second": x, "decode_tokens_per_second": y, "peak_memory_bytes": z}
    /// at the top level or under "bench".
    /// </summary>
    public static BenchNumbers ReadBench(JsonElement root, string source)
    {
        var b = root.TryGetProperty("bench", out var inner) && inner.ValueKind == JsonValueKind.Object ? inner : root;
        double Field(string name) => b.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number
            ? v.GetDouble()
            : throw new InvalidDataException($"{source}: missing number '{name}'");
        return new BenchNumbers(Field("prefill_tokens_per_second"), Field("decode_tokens_per_second"), Field("peak_memory_bytes"));
    }
}
