using EdgeLM.Inference;

namespace EdgeLM.Evaluation;

/// <summary>The slice of <see cref="InferenceSession"/> evaluation needs; tests substitute exact fakes.</summary>
public interface ILanguageModel
{
    int VocabSize { get; }
    int ContextLength { get; }
    int Position { get; }
    void Truncate(int position);
    /// <summary>Appends tokens; returns the logits of the last one (valid until the next call).</summary>
    ReadOnlySpan<float> Forward(ReadOnlySpan<int> tokens);
    /// <summary>Appends tokens; writes the logits of each: logits[i * VocabSize ..].</summary>
    void ForwardAll(ReadOnlySpan<int> tokens, Span<float> logits);
}

public sealed class SessionLanguageModel(InferenceSession session) : ILanguageModel
{
    public int VocabSize => session.Config.VocabSize;
    public int ContextLength => session.ContextLength;
    public int Position => session.Position;
    public void Truncate(int position) => session.Truncate(position);
    public ReadOnlySpan<float> Forward(ReadOnlySpan<int> tokens) => session.Forward(tokens);
    public void ForwardAll(ReadOnlySpan<int> tokens, Span<float> logits) => session.ForwardAll(tokens, logits);
}

/// <summary>Log-softmax of one logits row, in double as the reference computes it from float32 logits.</summary>
public static class LogSoftmax
{
    /// <summary>log p(token) and whether token is the argmax (first index on ties, as torch.argmax).</summary>
    public static (double LogProb, bool IsArgmax) Of(ReadOnlySpan<float> logits, int token)
    {
        if ((uint)token >= (uint)logits.Length) throw new ArgumentOutOfRangeException(nameof(token), $"token {token} outside {logits.Length} logits");
        float max = logits[0];
        int argmax = 0;
        for (int i = 1; i < logits.Length; i++)
            if (logits[i] > max) { max = logits[i]; argmax = i; }
        double sum = 0;
        for (int i = 0; i < logits.Length; i++) sum += Math.Exp((double)logits[i] - max);
        return ((double)logits[token] - max - Math.Log(sum), argmax == token);
    }
}
