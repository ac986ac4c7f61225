using System.Diagnostics;
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
    private readonly HashSet<int> _endIds;

    public Generator(InferenceSession session, BpeTokenizer tokenizer)
    {
        _session = session;
        _tokenizer = tokenizer;
        _endIds = [.. tokenizer.EndOfGenerationIds];
    }

    public InferenceSession Session => _session;

    /// <summary>
    /// Appends <paramref name="newTokens"/> to what the session already holds and generates a continuation,
    /// calling <paramref name="onText"/> with each piece of text as soon as it is complete UTF-8 and cannot be
    /// the start of a stop string.
    /// </summary>
    public GenerationResult Generate(ReadOnlySpan<int> newTokens, GenerationOptions options, Action<string> onText, CancellationToken cancel = default)
    {
        options.Sampling.Validate();
        if (options.MaxNewTokens < 0) throw new ArgumentException("the number of tokens to generate cannot be negative");
        if (newTokens.Length == 0 && _session.Position == 0) throw new ArgumentException("the prompt is empty");
        int ctx = _session.ContextLength;
        if (_session.Position + newTokens.Length > ctx)
            throw new ArgumentException($"prompt of {_session.Position + newTokens.Length} tokens exceeds the context of {ctx} tokens");

        // Models often have more output rows than the tokenizer has tokens (Qwen: 151,936 vs 151,669); rows past
        // the tokenizer are padding that no text maps to, so they are never sampled, whichever file the model came from.
        int samplable = Math.Min(_session.Config.VocabSize, _tokenizer.UsedVocabSize);
        var sampler = new Sampler(options.Sampling, samplable);
        var decoder = _tokenizer.CreateStreamingDecoder();
        var stops = new StopSequenceMatcher(options.StopStrings);
        var history = new int[Math.Min(ctx, newTokens.Length + options.MaxNewTokens)];
        newTokens[Math.Max(0, newTokens.Length - history.Length)..].CopyTo(history);
        int historyLen = Math.Min(newTokens.Length, history.Length);
        var generated = new List<int>(Math.Min(options.MaxNewTokens, 4096));

        var clock = Stopwatch.StartNew();
        ReadOnlySpan<float> logits = newTokens.Length > 0 ? _session.Forward(newTokens) : throw new ArgumentException("nothing to continue from: give at least one new token");
        var prefill = clock.Elapsed;
        clock.Restart();

        FinishReason finish = FinishReason.Length;
        var one = new int[1]; // once per generation: a stackalloc span cannot carry the logits span out of the loop
        while (generated.Count < options.MaxNewTokens)
        {
            if (cancel.IsCancellationRequested) { finish = FinishReason.Cancelled; break; }
            int window = Math.Min(historyLen, options.Sampling.RepetitionWindow);
            int token = sampler.Sample(logits[..samplable], history.AsSpan(historyLen - window, window));
            if (options.StopAtEndOfGeneration && _endIds.Contains(token)) { finish = FinishReason.EndOfGeneration; break; }
            generated.Add(token);
            if (historyLen == history.Length) { Array.Copy(history, 1, history, 0, history.Length - 1); historyLen--; }
            history[historyLen++] = token;

            var (emit, stopped) = stops.Push(decoder.Push(token));
            if (emit.Length > 0) onText(emit);
            if (stopped) { finish = FinishReason.StopString; break; }
            if (generated.Count == options.MaxNewTokens) break;
            if (_session.Position >= ctx) { finish = FinishReason.ContextFull; break; }
            one[0] = token;
            logits = _session.Forward(one);
        }
        if (finish != FinishReason.StopString)
        {
            var (tail, stoppedAtEnd) = stops.Push(decoder.Flush());
            if (tail.Length > 0) onText(tail);
            if (stoppedAtEnd) finish = FinishReason.StopString;
            else if (stops.Flush() is { Length: > 0 } held) onText(held);
        }
        return new GenerationResult(newTokens.Length, generated.Count, finish, prefill, clock.Elapsed, generated);
    }
}
