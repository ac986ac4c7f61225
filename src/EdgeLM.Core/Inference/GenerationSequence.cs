using System.Diagnostics;
using EdgeLM.Tokenization;

namespace EdgeLM.Inference;

/// <summary>
/// One generation advanced a step at a time: <see cref="Prefill"/> runs the prompt and picks the first token, each
/// <see cref="Step"/> runs one decode forward pass and picks the next. <see cref="Generator"/> drives it in a loop;
/// a server's scheduler interleaves several over sessions that share one worker pool. Both paths run the same code,
/// so a scheduled sequence produces exactly the text a single <see cref="Generator"/> call would with the same seed.
/// </summary>
public sealed class GenerationSequence
{
    private readonly InferenceSession _session;
    private readonly GenerationOptions _options;
    private readonly Action<string> _onText;
    private readonly CancellationToken _cancel;
    private readonly HashSet<int> _endIds;
    private readonly int _samplable;
    private readonly Sampler _sampler;
    private readonly StreamingDecoder _decoder;
    private readonly StopSequenceMatcher _stops;
    private readonly int[] _history;
    private int _historyLen;
    private readonly List<int> _generated;
    private readonly int[] _prompt;
    private readonly int[] _one = new int[1];
    private int _pending = -1;
    private TimeSpan _prefillTime, _decodeTime;
    private GenerationResult? _result;

    /// <summary>Validates everything up front, so a request that cannot run fails before it takes a session's time.</summary>
    public GenerationSequence(InferenceSession session, BpeTokenizer tokenizer, ReadOnlySpan<int> newTokens,
        GenerationOptions options, Action<string> onText, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(options);
        options.Sampling.Validate();
        if (options.MaxNewTokens < 0) throw new ArgumentException("the number of tokens to generate cannot be negative");
        if (newTokens.Length == 0 && session.Position == 0) throw new ArgumentException("the prompt is empty");
        if (newTokens.Length == 0) throw new ArgumentException("nothing to continue from: give at least one new token");
        int ctx = session.ContextLength;
        if (session.Position + newTokens.Length > ctx)
            throw new ArgumentException($"prompt of {session.Position + newTokens.Length} tokens exceeds the context of {ctx} tokens");

        _session = session;
        _options = options;
        _onText = onText;
        _cancel = cancel;
        _endIds = [.. tokenizer.EndOfGenerationIds];
        // Models often have more output rows than the tokenizer has tokens (Qwen: 151,936 vs 151,669); rows past
        // the tokenizer are padding that no text maps to, so they are never sampled, whichever file the model came from.
        _samplable = Math.Min(session.Config.VocabSize, tokenizer.UsedVocabSize);
        _sampler = new Sampler(options.Sampling, _samplable);
        _decoder = tokenizer.CreateStreamingDecoder();
        _stops = new StopSequenceMatcher(options.StopStrings);
        _history = new int[Math.Min(ctx, newTokens.Length + options.MaxNewTokens)];
        newTokens[Math.Max(0, newTokens.Length - _history.Length)..].CopyTo(_history);
        _historyLen = Math.Min(newTokens.Length, _history.Length);
        _generated = new List<int>(Math.Min(options.MaxNewTokens, 4096));
        _prompt = newTokens.ToArray();
    }

    public InferenceSession Session => _session;
    public int PromptTokens => _prompt.Length;
    public int GeneratedTokens => _generated.Count;
    public bool IsPrefilled { get; private set; }
    public bool IsFinished => _result != null;

    /// <summary>Set once the sequence has finished.</summary>
    public GenerationResult? Result => _result;

    /// <summary>Runs the prompt through the model and picks the first token (or finishes).</summary>
    public void Prefill()
    {
        if (IsPrefilled) throw new InvalidOperationException("the sequence is already prefilled");
        IsPrefilled = true;
        long start = Stopwatch.GetTimestamp();
        var logits = _session.Forward(_prompt);
        _prefillTime = Stopwatch.GetElapsedTime(start);
        start = Stopwatch.GetTimestamp();
        Advance(logits);
        _decodeTime += Stopwatch.GetElapsedTime(start);
    }

    /// <summary>One decode step: the forward pass of the last picked token, then the pick of the next one.</summary>
    public void Step()
    {
        if (!IsPrefilled) throw new InvalidOperationException("prefill the sequence before stepping it");
        if (IsFinished) return;
        long start = Stopwatch.GetTimestamp();
        if (_cancel.IsCancellationRequested) Finish(FinishReason.Cancelled);
        else
        {
            _one[0] = _pending;
            Advance(_session.Forward(_one));
        }
        _decodeTime += Stopwatch.GetElapsedTime(start);
    }

    private void Advance(ReadOnlySpan<float> logits)
    {
        if (_generated.Count >= _options.MaxNewTokens) { Finish(FinishReason.Length); return; }
        if (_cancel.IsCancellationRequested) { Finish(FinishReason.Cancelled); return; }
        int window = Math.Min(_historyLen, _options.Sampling.RepetitionWindow);
        int token = _sampler.Sample(logits[.._samplable], _history.AsSpan(_historyLen - window, window));
        if (_options.StopAtEndOfGeneration && _endIds.Contains(token)) { Finish(FinishReason.EndOfGeneration); return; }
        _generated.Add(token);
        if (_historyLen == _history.Length) { Array.Copy(_history, 1, _history, 0, _history.Length - 1); _historyLen--; }
        _history[_historyLen++] = token;

        var (emit, stopped) = _stops.Push(_decoder.Push(token));
        if (emit.Length > 0) _onText(emit);
        if (stopped) { Finish(FinishReason.StopString); return; }
        if (_generated.Count == _options.MaxNewTokens) { Finish(FinishReason.Length); return; }
        if (_session.Position >= _session.ContextLength) { Finish(FinishReason.ContextFull); return; }
        _pending = token;
    }

    private void Finish(FinishReason finish)
    {
        if (finish != FinishReason.StopString)
        {
            var (tail, stoppedAtEnd) = _stops.Push(_decoder.Flush());
            if (tail.Length > 0) _onText(tail);
            if (stoppedAtEnd) finish = FinishReason.StopString;
            else if (_stops.Flush() is { Length: > 0 } held) _onText(held);
        }
        _result = new GenerationResult(_prompt.Length, _generated.Count, finish, _prefillTime, _decodeTime, _generated);
    }
}
