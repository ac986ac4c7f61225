using EdgeLM.Evaluation;
using Xunit;

namespace EdgeLM.Tests.Evaluation;

/// <summary>Scores fixed in advance per (context, continuation).</summary>
internal sealed class FakeScorer(Func<string, string, double> score) : ILoglikelihoodScorer
{
    public List<(string Context, string Continuation)> Seen { get; } = [];

    public Loglikelihood[] Score(string context, IReadOnlyList<string> continuations)
    {
        foreach (var c in continuations) Seen.Add((context, c));
        return continuations.Select(c => new Loglikelihood(score(context, c), false)).ToArray();
    }
}

public sealed class MetricsTests
{
    private static EvalDoc Doc(int id, int gold, params string[] choices) => new(id, $"Question: q{id}\nAnswer:", choices, gold, $"{{\"id\":{id}}}");

    [Fact]
    public void CharacterLengthNormalizationCanOverruleRawAccuracy()
    {
        // Raw: "a" (-2) beats "a much longer answer" (-6). Per character: -2/1 = -2 < -6/20 = -0.3.
        var (acc, accNorm) = Metrics.MultipleChoice([-2.0, -6.0], ["a", "a much longer answer"], gold: 1);
        Assert.Equal(0, acc);
        Assert.Equal(1, accNorm);
        (acc, accNorm) = Metrics.MultipleChoice([-2.0, -6.0], ["a", "a much longer answer"], gold: 0);
        Assert.Equal(1, acc);
        Assert.Equal(0, accNorm);
    }

    [Fact]
    public void LengthCountsCodePointsNotUtf16Units()
    {
        // "😀" is one code point (two UTF-16 units): -3/1 = -3 loses to -4/2 = -2; with UTF-16 length it would be -1.5 and win.
        var (_, accNorm) = Metrics.MultipleChoice([-3.0, -4.0], ["😀", "ab"], gold: 1);
        Assert.Equal(1, accNorm);
        Assert.Equal(1, PythonText.CodePointLength("😀"));
    }

    [Fact]
    public void TiesGoToTheFirstChoice()
    {
        Assert.Equal((1.0, 1.0), Metrics.MultipleChoice([-1.0, -1.0], ["ab", "cd"], gold: 0));
        Assert.Equal((0.0, 0.0), Metrics.MultipleChoice([-1.0, -1.0], ["ab", "cd"], gold: 1));
    }

    [Fact]
    public void StderrIsSampleStdOverSqrtN()
    {
        // [1, 0, 1, 1]: mean 0.75, squared deviations 0.0625 * 3 + 0.5625 = 0.75, / 3 = 0.25, sd 0.5, / sqrt(4) = 0.25.
        Assert.Equal(0.75, Metrics.Mean([1, 0, 1, 1]));
        Assert.Equal(0.25, Metrics.MeanStderr([1, 0, 1, 1])!.Value, 12);
        Assert.Null(Metrics.MeanStderr([1]));
    }

    [Fact]
    public void EvaluatorAggregatesAFakeScorer()
    {
        var docs = new[]
        {
            Doc(0, 0, "yes", "no"),           // raw picks "yes" (-1 vs -3): acc 1; norm -1/3 vs -3/2: acc_norm 1
            Doc(1, 1, "x", "longer one"),     // raw picks "x" (-1 vs -5): acc 0; norm -1 vs -0.5: acc_norm 1
            Doc(2, 1, "aa", "bb"),            // raw picks "aa" (-1 vs -3): acc 0; acc_norm 0
        };
        var lls = new Dictionary<string, double> { [" yes"] = -1, [" no"] = -3, [" x"] = -1, [" longer one"] = -5, [" aa"] = -1, [" bb"] = -3 };
        var scorer = new FakeScorer((_, cont) => lls[cont]);
        var result = Evaluator.Run(EvalTask.Get("arc_easy"), docs, 10, scorer);
        Assert.Equal([1.0, 0, 0], result.Samples.Select(s => s.Acc));
        Assert.Equal([1.0, 1, 0], result.Samples.Select(s => s.AccNorm));
        Assert.Equal(1.0 / 3, result.Acc, 12);
        Assert.Equal(2.0 / 3, result.AccNorm, 12);
        // Sample sd of [1,0,0] = sqrt((4/9 + 1/9 + 1/9) / 2) = sqrt(1/3); / sqrt(3) = 1/3.
        Assert.Equal(1.0 / 3, result.AccStderr!.Value, 12);
        Assert.Equal(("Question: q1\nAnswer:", " longer one"), scorer.Seen[3]);
    }

    [Theory]
    [InlineData(1172, null, 1172)]
    [InlineData(1172, 60.0, 60)]
    [InlineData(1172, 5000.0, 1172)]
    [InlineData(1000, 0.1, 100)]
    [InlineData(1001, 0.1, 101)] // ceil, as lm-eval
    public void LimitFollowsLmEval(int total, double? limit, int expected) => Assert.Equal(expected, Evaluator.EffectiveCount(total, limit));
}
