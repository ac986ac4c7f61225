using System.Text.Json;
using EdgeLM.Evaluation;
using Xunit;

namespace EdgeLM.Tests.Evaluation;

public sealed class AicasScoreTests
{
    private static readonly ScoreEntry Baseline = new("orig", 0.50, new BenchNumbers(100, 10, 1000));

    [Fact]
    public void TermsAndNormalizationWorkedByHand()
    {
        var a = new ScoreEntry("a", 0.48, new BenchNumbers(200, 20, 500));
        var b = new ScoreEntry("b", 0.55, new BenchNumbers(400, 10, 250));
        var scores = AicasScore.Score(Baseline, [a, b], pMin: 0.40, pMax: 0.50);
        // a: accuracy (0.48-0.40)/0.10 = 0.8, memory 1-500/1000 = 0.5, prefill 1-100/200 = 0.5, decode 1-10/20 = 0.5
        Assert.Equal(new ScoreTerms(0.8, 0.5, 0.5, 0.5), Round(scores[0].Raw));
        // b: accuracy clipped to 1, memory 0.75, prefill 0.75, decode 0
        Assert.Equal(new ScoreTerms(1, 0.75, 0.75, 0), Round(scores[1].Raw));
        // Best terms 1, 0.75, 0.75, 0.5: a = 0.4*0.8 + 0.2*(2/3) + 0.2*(2/3) + 0.2*1 = 0.786667; b = 0.4 + 0.2 + 0.2 + 0 = 0.8
        Assert.Equal(0.32 + 0.4 * 2 / 3 + 0.2, scores[0].Score, 9);
        Assert.Equal(0.8, scores[1].Score, 9);
    }

    [Fact]
    public void BelowPMinTheAccuracyTermIsNegative()
    {
        var c = new ScoreEntry("c", 0.30, new BenchNumbers(100, 10, 1000));
        var d = new ScoreEntry("d", 0.45, new BenchNumbers(100, 10, 1000));
        var s = AicasScore.Score(Baseline, [c, d], 0.40, 0.50);
        Assert.Equal(-1, s[0].Raw.Accuracy, 9);
        Assert.Equal(-1 / 0.5, s[0].Normalized.Accuracy, 9);   // divided by the best (d: 0.5)
        Assert.Equal(0.4 * -2, s[0].Score, 9);                  // memory and speeds equal the baseline: 0
    }

    [Fact]
    public void ARegressionIsNotTurnedIntoARewardByNormalization()
    {
        var slow = new ScoreEntry("slow", 0.50, new BenchNumbers(50, 5, 2000));
        var s = AicasScore.Score(Baseline, [slow], 0.40, 0.50)[0];
        Assert.Equal(new ScoreTerms(1, -1, -1, -1), Round(s.Normalized));
        Assert.Equal(0.4 - 0.6, s.Score, 9);
    }

    [Fact]
    public void BadInputsAreRejected()
    {
        Assert.Throws<ArgumentException>(() => AicasScore.Score(Baseline, [Baseline], 0.5, 0.5));
        Assert.Throws<ArgumentException>(() => AicasScore.Score(Baseline, [new ScoreEntry("z", 0.5, new BenchNumbers(0, 1, 1))], 0.4, 0.5));
        using var doc = JsonDocument.Parse("""{"results":{"arc_easy":{"acc,none":0.6},"piqa":{"acc,none":0.7}}}""");
        Assert.Equal(0.65, AicasScore.AverageAccuracy(doc.RootElement, "x"), 12);
        using var bad = JsonDocument.Parse("""{"results":{"arc_easy":{"acc_norm,none":0.6}}}""");
        Assert.Contains("'acc,none'", Assert.Throws<InvalidDataException>(() => AicasScore.AverageAccuracy(bad.RootElement, "x")).Message);
        using var bench = JsonDocument.Parse("""{"bench":{"prefill_tokens_per_second":1,"decode_tokens_per_second":2,"peak_memory_bytes":3}}""");
        Assert.Equal(new BenchNumbers(1, 2, 3), AicasScore.ReadBench(bench.RootElement, "b"));
    }

    private static ScoreTerms Round(ScoreTerms t) =>
        new(Math.Round(t.Accuracy, 9), Math.Round(t.Memory, 9), Math.Round(t.Prefill, 9), Math.Round(t.Decode, 9));
}
