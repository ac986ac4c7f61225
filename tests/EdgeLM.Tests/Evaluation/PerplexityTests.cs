using EdgeLM.Evaluation;
using Xunit;

namespace EdgeLM.Tests.Evaluation;

public sealed class PerplexityTests
{
    private sealed class UniformModel(int vocab, int context) : ILanguageModel
    {
        private readonly float[] _logits = new float[vocab];
        public int VocabSize => vocab;
        public int ContextLength => context;
        public int Position { get; private set; }
        public List<int[]> Fed { get; } = [];
        public void Truncate(int position) => Position = position;
        public ReadOnlySpan<float> Forward(ReadOnlySpan<int> tokens) { Fed.Add(tokens.ToArray()); Position += tokens.Length; return _logits; }
        public void ForwardAll(ReadOnlySpan<int> tokens, Span<float> logits) { Fed.Add(tokens.ToArray()); Position += tokens.Length; logits[..(tokens.Length * vocab)].Clear(); }
    }

    [Fact]
    public void UniformLogitsGiveThePerplexityOfTheVocabulary()
    {
        var model = new UniformModel(37, 16);
        var tokens = Enumerable.Range(0, 40).Select(i => i % 37).ToArray();
        var r = Perplexity.Run(model, tokens, ctx: 16, bosId: null, batch: 4);
        Assert.Equal(2, r.Chunks);                   // 40 / 16, the tail is dropped
        Assert.Equal(2 * (16 - 1 - 8), r.ScoredTokens);
        Assert.Equal(37, r.Ppl, 9);
        Assert.Null(r.PplStderr);                      // zero variance: llama.cpp prints its warning line
        Assert.Equal("Unexpected negative standard deviation of log(prob)", Perplexity.FinalLine(r));
    }

    [Fact]
    public void WindowsAreNonOverlappingAndOnlyTheSecondHalfIsScored()
    {
        var model = new PrefixHashModel(23, 32);
        var tokens = Enumerable.Range(0, 70).Select(i => (i * 7 + 3) % 23).ToArray();
        const int ctx = 12, first = 6, bos = 22;
        var r = Perplexity.Run(model, tokens, ctx, bos, batch: 5);

        // Independent recomputation: window c is tokens[c*ctx ..], its first token replaced by BOS; position j (from
        // first to ctx-2) predicts token j+1 from the whole window prefix.
        var nlls = new List<double>();
        var logits = new float[23];
        for (int c = 0; c < 70 / ctx; c++)
        {
            var window = tokens.Skip(c * ctx).Take(ctx).ToArray();
            window[0] = bos;
            for (int j = first; j < ctx - 1; j++)
            {
                PrefixHashModel.LogitsFor(window.Take(j + 1).ToList(), logits);
                nlls.Add(-LogSoftmax.Of(logits, window[j + 1]).LogProb);
            }
        }
        double mean = nlls.Average(), mean2 = nlls.Select(v => v * v).Average();
        Assert.Equal(5, r.Chunks);
        Assert.Equal(nlls.Count, r.ScoredTokens);
        Assert.Equal(Math.Exp(mean), r.Ppl, 9);
        Assert.Equal(Math.Sqrt((mean2 - mean * mean) / (nlls.Count - 1)) * Math.Exp(mean), r.PplStderr!.Value, 9);
        Assert.Equal(Math.Exp(nlls.Take(5).Average()), r.RunningPpl[0], 9);
        Assert.StartsWith("Final estimate: PPL = ", Perplexity.FinalLine(r));
    }

    [Fact]
    public void TooShortTextIsRefusedLikeLlamaCpp()
    {
        var e = Assert.Throws<ArgumentException>(() => Perplexity.Run(new UniformModel(10, 64), new int[100], 64, null));
        Assert.Contains("at least 128 tokens", e.Message);
    }
}
