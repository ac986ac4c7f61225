using System.Diagnostics;
using EdgeLM.Models;
using EdgeLM.Tokenization;

namespace EdgeLM.Inference;

/// <summary>
/// One generation advanced a step at a time. Over an <see cref="InferenceSession"/>: <see cref="Prefill"/> runs the
/// prompt and picks the first token, each <see cref="Step"/> runs one decode forward pass and picks the next;
/// <see cref="Generator"/> drives it in a loop. Over a <see cref="BatchSequence"/> (a server's continuous batch):
/// <see cref="QueueNext"/> queues the prompt, then each picked token, on the batch; after every
/// <see cref="BatchedSession.Step"/>, <see cref="AcceptStep"/> picks from the logits once they are there. Both paths
/// sample the same logits with the same code, so a batched sequence produces exactly the text a single
/// <see cref="Generator"/> call would with the same seed.
/// </summary>
public sealed class GenerationSequence
{
    private readonly InferenceSession? _session;
    private readonly BatchSequence? _batchSequence;
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
    private bool _queued; // batched: tokens are queued on the batch and their logits not yet taken

    /// <summary>Validates everything up front, so a request that cannot run fails before it takes a session's time.</summary>
    public GenerationSequence(InferenceSession session, BpeTokenizer tokenizer, ReadOnlySpan<int> newTokens,
        GenerationOptions options, Action<string> onText, CancellationToken cancel = default)
        : this(session?.Config, session?.Position ?? 0, session?.ContextLength ?? 0, tokenizer, newTokens, options, onText, cancel)
    {
        _session = session;
    }

    /// <summary>A generation on a sequence of a <see cref="BatchedSession"/>, driven by <see cref="QueueNext"/> and
    /// <see cref="AcceptStep"/> around the batch's steps.</summary>
    public GenerationSequence(BatchSequence sequence, BpeTokenizer tokenizer, ReadOnlySpan<int> newTokens,
        GenerationOptions options, Action<string> onText, CancellationToken cancel = default)
        : this(sequence?.Owner.Config, sequence?.Position ?? 0, sequence?.ContextLength ?? 0, tokenizer, newTokens, options, onText, cancel)
    {
        if (sequence!.IsRemoved) throw new ArgumentException("the sequence was removed from its batch");
        if (sequence.PendingCount > 0) throw new ArgumentException("the sequence already has queued tokens");
        _batchSequence = sequence;
    }

    private GenerationSequence(ModelConfig? config, int position, int ctx, BpeTokenizer tokenizer, ReadOnlySpan<int> newTokens,
        GenerationOptions options, Action<string> onText, CancellationToken cancel)
    {
        if (config is null) throw new ArgumentNullException("session", "no session or batch sequence to generate on");
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(options);
        options.Sampling.Validate();
        if (options.MaxNewTokens < 0) throw new ArgumentException("the number of tokens to generate cannot be negative");
        if (newTokens.Length == 0 && position == 0) throw new ArgumentException("the prompt is empty");
        if (newTokens.Length == 0) throw new ArgumentException("nothing to continue from: give at least one new token");
        if (position + newTokens.Length > ctx)
            throw new ArgumentException($"prompt of {position + newTokens.Length} tokens exceeds the context of {ctx} tokens");

        _options = options;
        _onText = onText;
        _cancel = cancel;
        _endIds = [.. tokenizer.EndOfGenerationIds];
        // Models often have more output rows than the tokenizer has tokens (Qwen: 151,936 vs 151,669); rows past
        // the tokenizer are padding that no text maps to, so they are never sampled, whichever file the model came from.
        _samplable = Math.Min(config.VocabSize, tokenizer.UsedVocabSize);
        _sampler = new Sampler(options.Sampling, _samplable);
        _decoder = tokenizer.CreateStreamingDecoder();
        _stops = new StopSequenceMatcher(options.StopStrings);
        _history = new int[Math.Min(ctx, newTokens.Length + options.MaxNewTokens)];
        newTokens[Math.Max(0, newTokens.Length - _history.Length)..].CopyTo(_history);
        _historyLen = Math.Min(newTokens.Length, _history.Length);
        _generated = new List<int>(Math.Min(options.MaxNewTokens, 4096));
        _prompt = newTokens.ToArray();
    }

    /// <summary>The session generated on; null for a batched sequence.</summary>
    public InferenceSession? Session => _session;
    /// <summary>The batch sequence generated on; null for a session's.</summary>
    public BatchSequence? BatchSequence => _batchSequence;
    public int PromptTokens => _prompt.Length;
    public int GeneratedTokens => _generated.Count;
    public bool IsPrefilled { get; private set; }
    public bool IsFinished => _result != null;

    /// <summary>Set once the sequence has finished.</summary>
    public GenerationResult? Result => _result;

    /// <summary>Runs the prompt through the model and picks the first token (or finishes).</summary>
    public void Prefill()
    {
        var session = _session ?? throw new InvalidOperationException("a batched sequence runs through QueueNext and AcceptStep");
        if (IsPrefilled) throw new InvalidOperationException("the sequence is already prefilled");
        IsPrefilled = true;
        long start = Stopwatch.GetTimestamp();
        var logits = session.Forward(_prompt);
        _prefillTime = Stopwatch.GetElapsedTime(start);
        start = Stopwatch.GetTimestamp();
        Advance(logits);
        _decodeTime += Stopwatch.GetElapsedTime(start);
    }

    /// <summary>One decode step: the forward pass of the last picked token, then the pick of the next one.</summary>
    public void Step()
    {
        var session = _session ?? throw new InvalidOperationException("a batched sequence runs through QueueNext and AcceptStep");
        if (!IsPrefilled) throw new InvalidOperationException("prefill the sequence before stepping it");
        if (IsFinished) return;
        long start = Stopwatch.GetTimestamp();
        if (_cancel.IsCancellationRequested) Finish(FinishReason.Cancelled);
        else
        {
            _one[0] = _pending;
            Advance(session.Forward(_one));
        }
        _decodeTime += Stopwatch.GetElapsedTime(start);
    }

    /// <summary>
    /// Batched: before a batch step, queues what this sequence runs next (its prompt, then its last picked token)
    /// unless earlier tokens are still queued (a long prompt runs over several steps). A cancelled sequence finishes
    /// here instead and drops its queue. Returns false when the sequence is finished.
    /// </summary>
    public bool QueueNext()
    {
        var sequence = _batchSequence ?? throw new InvalidOperationException("a session's sequence runs through Prefill and Step");
        if (IsFinished) return false;
        if (_cancel.IsCancellationRequested)
        {
            if (!sequence.IsRemoved) sequence.ClearPending();
            _queued = false;
            Finish(FinishReason.Cancelled);
            return false;
        }
        if (_queued) return true;
        if (!IsPrefilled) sequence.Append(_prompt);
        else
        {
            _one[0] = _pending;
            sequence.Append(_one);
        }
        _queued = true;
        return true;
    }

    /// <summary>
    /// Batched: after a batch step that took <paramref name="stepTime"/>, picks the next token if this sequence's
    /// queued tokens have all run (its logits are there); otherwise only counts the time.
    /// </summary>
    public void AcceptStep(TimeSpan stepTime)
    {
        var sequence = _batchSequence ?? throw new InvalidOperationException("a session's sequence runs through Prefill and Step");
        if (IsFinished || !_queued) return;
        if (!IsPrefilled) _prefillTime += stepTime;
        else _decodeTime += stepTime;
        if (!sequence.HasLogits) return;
        _queued = false;
        IsPrefilled = true;
        long start = Stopwatch.GetTimestamp();
        Advance(sequence.Logits);
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
        if (Position >= ContextLength) { Finish(FinishReason.ContextFull); return; }
        _pending = token;
    }

    private int Position => _session?.Position ?? _batchSequence!.Position;
    private int ContextLength => _session?.ContextLength ?? _batchSequence!.ContextLength;

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
