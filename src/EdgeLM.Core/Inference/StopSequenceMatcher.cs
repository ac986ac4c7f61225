namespace EdgeLM.Inference;

/// <summary>
/// Watches streamed text for stop strings. Text that could still turn out to be the start of a stop string is held
/// back, so nothing of a stop string is ever shown, even when it arrives split over several pieces.
/// Matching is ordinal (exact UTF-16 code units). Not thread-safe.
/// </summary>
public sealed class StopSequenceMatcher
{
    private readonly string[] _stopSequences;
    private string _pending = "";

    public StopSequenceMatcher(IEnumerable<string> stopSequences)
    {
        ArgumentNullException.ThrowIfNull(stopSequences);
        _stopSequences = [.. stopSequences];
        foreach (string stop in _stopSequences)
        {
            if (string.IsNullOrEmpty(stop)) throw new ArgumentException("stop sequences must be non-empty strings", nameof(stopSequences));
        }
    }

    public IReadOnlyList<string> StopSequences => _stopSequences;

    /// <summary>True once a stop string has been seen; later pushes emit nothing.</summary>
    public bool Stopped { get; private set; }

    /// <summary>The stop string that ended the stream, or null.</summary>
    public string? MatchedStopSequence { get; private set; }

    /// <summary>
    /// Adds the next decoded piece. Returns the text that is now safe to show and whether a stop string completed;
    /// when it did, <c>emit</c> is the text before the stop string and everything after it is discarded.
    /// </summary>
    public (string emit, bool stopped) Push(string piece)
    {
        ArgumentNullException.ThrowIfNull(piece);
        if (Stopped) return ("", true);
        if (piece.Length == 0) return ("", false);

        string text = _pending.Length == 0 ? piece : _pending + piece;

        // The match that ends first is the one a character-by-character stream would complete first; ties go to
        // the longer stop. This makes the result independent of how the text was split into pieces.
        int matchStart = -1, matchEnd = int.MaxValue;
        foreach (string stop in _stopSequences)
        {
            int at = text.IndexOf(stop, StringComparison.Ordinal);
            if (at < 0) continue;
            int end = at + stop.Length;
            if (end < matchEnd || (end == matchEnd && at < matchStart))
            {
                matchStart = at;
                matchEnd = end;
                MatchedStopSequence = stop;
            }
        }
        if (matchStart >= 0)
        {
            Stopped = true;
            _pending = "";
            return (text[..matchStart], true);
        }

        // Any later match must start inside the longest tail that is a proper prefix of some stop string:
        // a match starting earlier would already be complete, or its start would be such a tail.
        int held = LongestTailThatStartsAStop(text);
        _pending = text[^held..];
        return (text[..^held], false);
    }

    /// <summary>Ends the stream: returns the held-back text (empty after a stop) and clears it.</summary>
    public string Flush()
    {
        string rest = _pending;
        _pending = "";
        return rest;
    }

    /// <summary>Forgets held text and any stop, to reuse the matcher for a new stream.</summary>
    public void Reset()
    {
        _pending = "";
        Stopped = false;
        MatchedStopSequence = null;
    }

    private int LongestTailThatStartsAStop(string text)
    {
        int longest = 0;
        foreach (string stop in _stopSequences)
        {
            for (int length = Math.Min(stop.Length - 1, text.Length); length > longest; length--)
            {
                if (text.AsSpan(text.Length - length).SequenceEqual(stop.AsSpan(0, length)))
                {
                    longest = length;
                    break;
                }
            }
        }
        return longest;
    }
}
