using EdgeLM.Evaluation;
using EdgeLM.Inference;
using EdgeLM.Tests.Inference;
using EdgeLM.Tokenization;
using Xunit;

namespace EdgeLM.Tests.Evaluation;

/// <summary>The batched scorer must give the single-sequence scorer's log-likelihoods bit for bit.</summary>
public sealed class BatchedScorerTests
{
    private static readonly TinyModelSpec Spec = new(Layers: 1, Hidden: 32, Heads: 2, KvHeads: 1, Ff: 64, Vocab: 300, Context: 1024, Seed: 7);

    private static List<(string Context, IReadOnlyList<string> Continuations)> RealItems()
    {
        // Real PIQA and ARC items (2 and 3-5 choices) and the hand-made HellaSwag ones (4 long endings).
        var docs = ReferenceParityTests.Docs("piqa").GetRange(0, 3)
            .Concat(ReferenceParityTests.Docs("arc_challenge").GetRange(0, 3))
            .Concat(ReferenceParityTests.LoadHellaSwagSample().GetRange(0, 2));
        return docs.Select(d =>
        {
            var (context, continuations) = Evaluator.Requests(d);
            return (context, (IReadOnlyList<string>)continuations);
        }).ToList();
    }

    private static Loglikelihood[][] Reference(TinyModel tiny, IReadOnlyList<(string Context, IReadOnlyList<string> Continuations)> items, int maxLength)
    {
        using var session = new InferenceSession(tiny.Config, tiny.Weights, maxLength, threads: 1);
        var scorer = new ModelScorer(new SessionLanguageModel(session), RequestEncoding.TokenizerEncoder(BpeTokenizer.CreateByteLevel(300)), 256);
        return items.Select(i => scorer.Score(i.Context, i.Continuations)).ToArray();
    }

    private static void AssertBitwiseEqual(Loglikelihood[][] expected, Loglikelihood[][] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.Equal(expected[i].Length, actual[i].Length);
            for (int c = 0; c < expected[i].Length; c++)
            {
                Assert.True(BitConverter.DoubleToInt64Bits(expected[i][c].LogLikelihood) == BitConverter.DoubleToInt64Bits(actual[i][c].LogLikelihood),
                    $"item {i} choice {c}: {expected[i][c].LogLikelihood:R} alone, {actual[i][c].LogLikelihood:R} batched");
                Assert.Equal(expected[i][c].IsGreedy, actual[i][c].IsGreedy);
            }
        }
    }

    [Theory]
    // Everything in one pass per phase; then few sequences and short steps, so continuations wait for a free
    // sequence, fork from a busy context and run split over several steps.
    [InlineData(1024, 8, 32, 512, 2)]
    [InlineData(1024, 3, 3, 16, 1)]
    [InlineData(1024, 8, 1, 7, 1)]
    // A max length below the longest requests: those items are cut from the left, one unit per choice.
    [InlineData(200, 4, 5, 32, 1)]
    public void BatchedLogLikelihoodsEqualTheSingleSequenceOnesBitwise(int maxLength, int itemsPerBatch, int maxSequences, int tokensPerStep, int threads)
    {
        using var tiny = new TinyModel(Spec);
        var items = RealItems();
        var expected = Reference(tiny, items, maxLength);
        using var batched = new BatchedModelScorer(tiny.Config, tiny.Weights, RequestEncoding.TokenizerEncoder(BpeTokenizer.CreateByteLevel(300)), 256,
            maxLength, threads, itemsPerBatch, maxSequences, tokensPerStep);
        var actual = new List<Loglikelihood[]>();
        for (int i = 0; i < items.Count; i += itemsPerBatch)
            actual.AddRange(batched.ScoreBatch(items.GetRange(i, Math.Min(itemsPerBatch, items.Count - i))));
        AssertBitwiseEqual(expected, actual.ToArray());
        Assert.All(actual, r => Assert.All(r, l => Assert.True(l.LogLikelihood < 0)));
    }

    [Fact]
    public void EvaluatorGivesTheSameSamplesWithEitherScorer()
    {
        using var tiny = new TinyModel(Spec);
        var task = EvalTask.Get("arc_challenge");
        var docs = ReferenceParityTests.Docs("arc_challenge").GetRange(0, 5);
        using var session = new InferenceSession(tiny.Config, tiny.Weights, 1024, threads: 1);
        var encode = RequestEncoding.TokenizerEncoder(BpeTokenizer.CreateByteLevel(300));
        var single = Evaluator.Run(task, docs, 1172, new ModelScorer(new SessionLanguageModel(session), encode, 256));
        using var batched = new BatchedModelScorer(tiny.Config, tiny.Weights, encode, 256, 1024, threads: 1, itemsPerBatch: 2);
        var reported = new List<int>();
        var together = Evaluator.Run(task, docs, 1172, batched, progress: (done, total) => reported.Add(done));
        Assert.Equal([1, 2, 3, 4, 5], reported);
        Assert.Equal(single.Samples.Count, together.Samples.Count);
        for (int i = 0; i < docs.Count; i++)
        {
            Assert.Same(docs[i], together.Samples[i].Doc);
            Assert.Equal(single.Samples[i].Context, together.Samples[i].Context);
            Assert.Equal(single.Samples[i].Continuations, together.Samples[i].Continuations);
            Assert.Equal(single.Samples[i].Results, together.Samples[i].Results);
            Assert.Equal(single.Samples[i].Acc, together.Samples[i].Acc);
        }
        Assert.Equal(single.AccNorm, together.AccNorm);
    }

    [Fact]
    public void ForkedSequenceContinuesLikeTheOriginal()
    {
        using var tiny = new TinyModel(Spec);
        using var batch = new BatchedSession(tiny.Config, tiny.Weights, 2, 64, threads: 1, maxTokensPerStep: 16);
        var source = batch.Add();
        source.Append([5, 9, 200, 17, 3, 44]);
        while (batch.PendingTokens > 0) batch.Step();
        var fork = batch.Add();
        fork.CopyPrefixFrom(source, 4);
        Assert.Equal(4, fork.Position);
        source.Truncate(4);
        source.Append([77, 8]);
        fork.Append([77, 8]);
        var logits = new float[4 * 300];
        Assert.Equal(4, batch.StepAll([2, 2], logits));
        Assert.True(logits.AsSpan(0, 600).SequenceEqual(logits.AsSpan(600, 600)));

        using var alone = new InferenceSession(tiny.Config, tiny.Weights, 64, threads: 1);
        var expected = new float[6 * 300];
        alone.ForwardAll([5, 9, 200, 17, 77, 8], expected);
        Assert.True(expected.AsSpan(4 * 300).SequenceEqual(logits.AsSpan(0, 600)));
    }

    [Fact]
    public void StepAllRejectsWhatOneStepCannotHold()
    {
        using var tiny = new TinyModel(Spec);
        using var batch = new BatchedSession(tiny.Config, tiny.Weights, 2, 64, threads: 1, maxTokensPerStep: 4);
        var a = batch.Add();
        a.Append([1, 2, 3, 4, 5]);
        var logits = new float[5 * 300];
        Assert.Contains("exceed", Assert.Throws<InvalidOperationException>(() => batch.StepAll([1], logits)).Message);
        a.ClearPending();
        a.Append([1, 2]);
        Assert.Throws<ArgumentOutOfRangeException>(() => batch.StepAll([3], logits));
        Assert.Throws<ArgumentException>(() => batch.StepAll([1, 0], logits));
        Assert.Throws<ArgumentException>(() => batch.StepAll([2], new float[300]));
        var other = batch.Add();
        Assert.Throws<ArgumentOutOfRangeException>(() => other.CopyPrefixFrom(a, 1)); // a has run nothing yet
    }
}
