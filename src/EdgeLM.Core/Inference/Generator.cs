using EdgeLM.Tokenization;

namespace EdgeLM.Inference;

public sealed record GenerationOptions
{
    public int MaxNewTokens { get; init; } = 128;
    public SamplingOptions Sampling { get; init; } = new();
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    /// <summary>Stop at the tokenizer's end-of-generation tokens (EOS, &lt;|im_end|&gt;, &lt;|endoftext|&gt;).</summary>
    public bool StopAtEndOfGeneration { get; init; } = true;
}

public enum FinishReason { Length, EndOfGeneration, StopString, ContextFull, Cancelled }

public sealed record GenerationResult(
    int PromptTokens, int GeneratedTokens, FinishReason Finish,
    TimeSpan PrefillTime, TimeSpan DecodeTime, IReadOnlyList<int> Tokens)
{
    public double PrefillTokensPerSecond => PromptTokens / Math.Max(PrefillTime.TotalSeconds, 1e-9);
    /// <summary>The first token comes from prefill's logits, so decode rate counts the tokens after it.</summary>
    public double DecodeTokensPerSecond => Math.Max(GeneratedTokens - 1, 0) / Math.Max(DecodeTime.TotalSeconds, 1e-9);
}

/// <summary>Prompt in, streamed text out: prefill, then sample/decode until a stop condition.</summary>
public sealed class Generator
{
    private readonly InferenceSession _session;
    private readonly BpeTokenizer _tokenizer;

    public Generator(InferenceSession session, BpeTokenizer tokenizer)
    {
        _session = session;
        _tokenizer = tokenizer;
    }

    public InferenceSession Session => _session;

    /// <summary>
    /// Appends <paramref name="newTokens"/> to what the session already holds and generates a continuation,
    /// calling <paramref name="onText"/> with each piece of text as soon as it is complete UTF-8 and cannot be
    /// the start of a stop string.
    /// </summary>
    public GenerationResult Generate(ReadOnlySpan<int> newTokens, GenerationOptions options, Action<string> onText, CancellationToken cancel = default)
    {
        var sequence = new GenerationSequence(_session, _tokenizer, newTokens, options, onText, cancel);
        sequence.Prefill();
        while (!sequence.IsFinished) sequence.Step();
        return sequence.Result!;
    }
}
