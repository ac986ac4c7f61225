using EdgeLM.Tokenization;

namespace EdgeLM.Evaluation;

/// <summary>Result of one loglikelihood request: sum of the continuation's token log-probs, and whether greedy decoding would produce it.</summary>
public readonly record struct Loglikelihood(double LogLikelihood, bool IsGreedy);

/// <summary>Scores the continuations of one item, which share one context (the multiple-choice case).</summary>
public interface ILoglikelihoodScorer
{
    Loglikelihood[] Score(string context, IReadOnlyList<string> continuations);
}

/// <summary>The token ids of one request, split as lm-eval's HFLM._encode_pair splits them.</summary>
public readonly record struct EncodedPair(int[] Context, int[] Continuation);

public static class RequestEncoding
{
    /// <summary>
    /// HFLM._encode_pair: the context's trailing whitespace moves to the front of the continuation; the continuation's
    /// ids are those of tokenize(context + continuation) after the first len(tokenize(context)) ids, so a token that
    /// merges across the boundary belongs to the continuation. An empty context becomes [prefixTokenId] (HFLM's
    /// prefix_token_id: BOS, else EOS).
    /// </summary>
    public static EncodedPair EncodePair(Func<string, int[]> encode, string context, string continuation, int prefixTokenId)
    {
        if (context.Length == 0) return new EncodedPair([prefixTokenId], encode(continuation));
        var (ctx, cont) = SplitTrailingWhitespace(context, continuation);
        int[] whole = encode(ctx + cont);
        int[] contextIds = encode(ctx);
        if (contextIds.Length > whole.Length)
            throw new InvalidOperationException("the context encodes to more tokens than context + continuation");
        return new EncodedPair(contextIds, whole[contextIds.Length..]);
    }

    public static (string Context, string Continuation) SplitTrailingWhitespace(string context, string continuation)
    {
        string trimmed = PythonText.RStrip(context);
        int spaces = context.Length - trimmed.Length;
        return spaces > 0 ? (trimmed, context[^spaces..] + continuation) : (context, continuation);
    }

    /// <summary>tok_encode: special tokens written in the text are parsed (as Hugging Face encode() does); BOS only when the tokenizer adds one (never for Qwen).</summary>
    public static Func<string, int[]> TokenizerEncoder(BpeTokenizer tokenizer) => text =>
    {
        int[] ids = tokenizer.Encode(text);
        return tokenizer.AddBos && tokenizer.BosId is int bos ? [bos, .. ids] : ids;
    };

    /// <summary>HFLM.prefix_token_id: BOS when the tokenizer has one, else EOS.</summary>
    public static int PrefixTokenId(BpeTokenizer tokenizer) =>
        tokenizer.BosId ?? tokenizer.EosId ?? throw new InvalidDataException("the tokenizer has neither a BOS nor an EOS token for empty contexts");
}

/// <summary>
/// Scores requests with a model. The context runs once per item; each continuation then rolls the cache back to the
/// end of the context and feeds its tokens but the last, reading the log-prob of token j from the logits one
/// position earlier (the last context position for j = 0). Inputs longer than the model's context are cut from the
/// left as lm-eval does ((context + continuation)[-(max_length + 1):][:-1]).
/// </summary>
public sealed class ModelScorer : ILoglikelihoodScorer
{
    private readonly ILanguageModel _model;
    private readonly Func<string, int[]> _encode;
    private readonly int _prefixTokenId;
    private readonly float[] _contextLogits;
    private float[] _logits = [];

    public ModelScorer(ILanguageModel model, Func<string, int[]> encode, int prefixTokenId)
    {
        _model = model;
        _encode = encode;
        _prefixTokenId = prefixTokenId;
        _contextLogits = new float[model.VocabSize];
    }

    /// <summary>Tokens run through the model so far (prompt throughput).</summary>
    public long TokensProcessed { get; private set; }

    public Loglikelihood[] Score(string context, IReadOnlyList<string> continuations)
    {
        var pairs = continuations.Select(c => RequestEncoding.EncodePair(_encode, context, c, _prefixTokenId)).ToArray();
        var results = new Loglikelihood[pairs.Length];
        // The split can differ between choices only through the prefix of the whole encoding, never the context ids.
        bool shared = pairs.All(p => p.Context.AsSpan().SequenceEqual(pairs[0].Context));
        bool fits = pairs.All(p => p.Context.Length + p.Continuation.Length - 1 <= _model.ContextLength);
        if (shared && fits)
        {
            _model.Truncate(0);
            RunContext(pairs[0].Context);
            for (int i = 0; i < pairs.Length; i++) results[i] = ScoreContinuation(pairs[i].Context.Length, pairs[i].Continuation);
        }
        else
        {
            for (int i = 0; i < pairs.Length; i++)
            {
                var (ctx, cont) = FitToContext(pairs[i]);
                _model.Truncate(0);
                RunContext(ctx);
                results[i] = ScoreContinuation(ctx.Length, cont);
            }
        }
        return results;
    }

    private void RunContext(int[] context)
    {
        _model.Forward(context).CopyTo(_contextLogits);
        TokensProcessed += context.Length;
    }

    private (int[] Context, int[] Continuation) FitToContext(EncodedPair pair)
    {
        int max = _model.ContextLength;
        if (pair.Continuation.Length == 0) throw new ArgumentException("a continuation encodes to no tokens");
        if (pair.Continuation.Length > max)
            throw new ArgumentException($"a continuation of {pair.Continuation.Length} tokens exceeds the context of {max}");
        int overflow = pair.Context.Length + pair.Continuation.Length - 1 - max;
        return overflow > 0 ? (pair.Context[overflow..], pair.Continuation) : (pair.Context, pair.Continuation);
    }

    private Loglikelihood ScoreContinuation(int contextLength, int[] continuation)
    {
        if (continuation.Length == 0) throw new ArgumentException("a continuation encodes to no tokens");
        int vocab = _model.VocabSize;
        var (first, greedy) = LogSoftmax.Of(_contextLogits, continuation[0]);
        double sum = first;
        int fed = continuation.Length - 1;
        if (fed > 0)
        {
            _model.Truncate(contextLength);
            long needed = (long)fed * vocab;
            if (_logits.Length < needed) _logits = new float[needed];
            _model.ForwardAll(continuation.AsSpan(0, fed), _logits);
            TokensProcessed += fed;
            for (int j = 1; j < continuation.Length; j++)
            {
                var (lp, isMax) = LogSoftmax.Of(_logits.AsSpan((j - 1) * vocab, vocab), continuation[j]);
                sum += lp;
                greedy &= isMax;
            }
        }
        return new Loglikelihood(sum, greedy);
    }
}
