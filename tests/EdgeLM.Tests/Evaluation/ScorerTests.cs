using EdgeLM.Evaluation;
using EdgeLM.Inference;
using EdgeLM.Tests.Support;
using EdgeLM.Tokenization;
using Xunit;

namespace EdgeLM.Tests.Evaluation;

/// <summary>A model whose logits are a hash of the whole prefix, so any cache mistake changes the numbers.</summary>
internal sealed class PrefixHashModel(int vocab, int context) : ILanguageModel
{
    private readonly List<int> _tokens = [];
    private readonly float[] _last = new float[vocab];
    public int VocabSize => vocab;
    public int ContextLength => context;
    public int Position => _tokens.Count;
    public int TokensFed { get; private set; }

    public void Truncate(int position) => _tokens.RemoveRange(position, _tokens.Count - position);

    public ReadOnlySpan<float> Forward(ReadOnlySpan<int> tokens)
    {
        Append(tokens);
        LogitsFor(_tokens, _last);
        return _last;
    }

    public void ForwardAll(ReadOnlySpan<int> tokens, Span<float> logits)
    {
        for (int i = 0; i < tokens.Length; i++)
        {
            Append(tokens.Slice(i, 1));
            LogitsFor(_tokens, logits.Slice(i * vocab, vocab));
        }
    }

    private void Append(ReadOnlySpan<int> tokens)
    {
        if (_tokens.Count + tokens.Length > context) throw new ArgumentException("context exceeded");
        foreach (int t in tokens) _tokens.Add(t);
        TokensFed += tokens.Length;
    }

    public static void LogitsFor(IReadOnlyList<int> prefix, Span<float> logits)
    {
        ulong h = 1469598103934665603UL;
        foreach (int t in prefix) h = (h ^ (uint)t) * 1099511628211UL;
        for (int v = 0; v < logits.Length; v++)
        {
            ulong x = (h ^ (ulong)v * 0x9E3779B97F4A7C15UL) * 0xBF58476D1CE4E5B9UL;
            logits[v] = (float)((x >> 40) / (double)(1UL << 24) * 6 - 3);
        }
    }
}

public sealed class ScorerTests
{
    /// <summary>Word-level stand-in tokenizer: each space-led word is one token, so boundaries are easy to reason about.</summary>
    private static int[] Words(string text)
    {
        var ids = new List<int>();
        int start = 0;
        for (int i = 1; i <= text.Length; i++)
            if (i == text.Length || text[i] == ' ')
            {
                ids.Add(Math.Abs(text[start..i].GetHashCode()) % 50);
                start = i;
            }
        return text.Length == 0 ? [] : [.. ids];
    }

    private static Loglikelihood Naive(int[] context, int[] continuation, int vocab)
    {
        var prefix = new List<int>(context);
        var logits = new float[vocab];
        double sum = 0;
        bool greedy = true;
        foreach (int t in continuation)
        {
            PrefixHashModel.LogitsFor(prefix, logits);
            var (lp, isMax) = LogSoftmax.Of(logits, t);
            sum += lp;
            greedy &= isMax;
            prefix.Add(t);
        }
        return new Loglikelihood(sum, greedy);
    }

    [Fact]
    public void ReusedContextCacheGivesTheNaiveResults()
    {
        var model = new PrefixHashModel(50, 64);
        var scorer = new ModelScorer(model, Words, prefixTokenId: 0);
        string context = "Question: what is the answer\nAnswer:";
        string[] continuations = [" one", " two words", " three more words here"];
        var results = scorer.Score(context, continuations);
        for (int i = 0; i < continuations.Length; i++)
        {
            var pair = RequestEncoding.EncodePair(Words, context, continuations[i], 0);
            var expected = Naive(pair.Context, pair.Continuation, 50);
            Assert.Equal(expected.LogLikelihood, results[i].LogLikelihood, 12);
            Assert.Equal(expected.IsGreedy, results[i].IsGreedy);
        }
        // The context runs once; each continuation feeds all its tokens but the last.
        Assert.Equal(Words(context).Length + 0 + 1 + 3, model.TokensFed);
    }

    [Fact]
    public void OverlongInputIsCutFromTheLeftLikeLmEval()
    {
        var model = new PrefixHashModel(50, 8);
        var scorer = new ModelScorer(model, Words, prefixTokenId: 0);
        string context = "a b c d e f g h i j";  // 10 words
        var result = scorer.Score(context, [" k l m"])[0];
        // lm-eval: (ctx + cont)[-(max_length + 1):][:-1] -> the last 6 context tokens + 3 continuation tokens - 1 = 8 inputs.
        var pair = RequestEncoding.EncodePair(Words, context, " k l m", 0);
        var expected = Naive(pair.Context[4..], pair.Continuation, 50);
        Assert.Equal(expected.LogLikelihood, result.LogLikelihood, 12);
    }

    [Fact]
    public void EmptyContextStartsFromThePrefixToken()
    {
        var pair = RequestEncoding.EncodePair(Words, "", " hello world", prefixTokenId: 7);
        Assert.Equal([7], pair.Context);
        Assert.Equal(Words(" hello world"), pair.Continuation);
    }

    [Fact]
    public void TrailingWhitespaceMovesToTheContinuation()
    {
        var seen = new List<string>();
        int[] Encode(string s) { seen.Add(s); return Words(s); }
        var pair = RequestEncoding.EncodePair(Encode, "Answer: ", "yes", 0);
        Assert.Equal(["Answer: yes", "Answer:"], seen);
        Assert.Equal(Words("Answer: yes")[Words("Answer:").Length..], pair.Continuation);
    }

    [Fact]
    public void ContinuationIsTheTailOfTheWholeEncodingWithTheRealTokenizer()
    {
        var tokenizer = BpeTokenizer.FromTokenizerJson(TestPaths.QwenTokenizerJson);
        var encode = RequestEncoding.TokenizerEncoder(tokenizer);
        foreach (var (ctx, cont) in new[] { ("Question: 2+2\nAnswer:", " 4"), ("The sky is ", "blue."), ("x\n\n", " y"), ("Hello", "world") })
        {
            var pair = RequestEncoding.EncodePair(encode, ctx, cont, 0);
            var (c2, k2) = RequestEncoding.SplitTrailingWhitespace(ctx, cont);
            int[] whole = tokenizer.Encode(c2 + k2);
            Assert.Equal(tokenizer.Encode(c2), pair.Context);
            Assert.Equal(whole[pair.Context.Length..], pair.Continuation);
        }
        // When BPE merges across the boundary the pieces no longer add up to the text ("Hello" | "world" encodes
        // "Helloworld" differently); lm-eval keeps that split, and so must we.
        var odd = RequestEncoding.EncodePair(encode, "Hello", "world", 0);
        Assert.Equal(tokenizer.Encode("Helloworld")[tokenizer.Encode("Hello").Length..], odd.Continuation);
        Assert.False(tokenizer.AddBos); // Qwen: no BOS, as lm-eval's HFLM with add_bos_token false
    }

    [Fact]
    public void RealSessionCachedScoresMatchOneFullPass()
    {
        using var tiny = new EdgeLM.Tests.Inference.TinyModel(new EdgeLM.Tests.Inference.TinyModelSpec(Vocab: 300, Context: 128, Seed: 5));
        using var session = new InferenceSession(tiny.Config, tiny.Weights, 128, threads: 1);
        var tokenizer = BpeTokenizer.CreateByteLevel(300);
        var encode = RequestEncoding.TokenizerEncoder(tokenizer);
        var scorer = new ModelScorer(new SessionLanguageModel(session), encode, 256);
        string context = "Question: which?\nAnswer:";
        string[] continuations = [" left", " right side", " up"];
        var results = scorer.Score(context, continuations);
        var full = new float[128 * 300];
        for (int i = 0; i < continuations.Length; i++)
        {
            var pair = RequestEncoding.EncodePair(encode, context, continuations[i], 256);
            int[] input = [.. pair.Context, .. pair.Continuation[..^1]];
            session.Reset();
            session.ForwardAll(input, full);
            double sum = 0;
            for (int j = 0; j < pair.Continuation.Length; j++)
                sum += LogSoftmax.Of(full.AsSpan((pair.Context.Length - 1 + j) * 300, 300), pair.Continuation[j]).LogProb;
            Assert.Equal(sum, results[i].LogLikelihood, 3);
        }
    }
}
