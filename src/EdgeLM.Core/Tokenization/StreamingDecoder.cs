using System.Text;

namespace EdgeLM.Tokenization;

/// <summary>
/// Turns generated token ids into text as they arrive. A character split across tokens (CJK, emoji) is held back
/// until its last byte arrives, so the concatenation of all <see cref="Push"/> results and <see cref="Flush"/>
/// equals <see cref="BpeTokenizer.Decode"/> of the whole sequence. Not thread-safe; one per generation.
/// </summary>
public sealed class StreamingDecoder
{
    private readonly BpeTokenizer _tokenizer;
    // A stateful UTF-8 decoder keeps the incomplete tail itself and replaces invalid bytes exactly as one-shot decoding does.
    private readonly Decoder _utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();
    private char[] _chars = new char[64];

    internal StreamingDecoder(BpeTokenizer tokenizer) => _tokenizer = tokenizer;

    /// <summary>Adds one token; returns the text it completes (often empty for a partial character).</summary>
    public string Push(int id) => Convert(_tokenizer.TokenBytesSpan(id), flush: false);

    /// <summary>Returns what is still held back (an incomplete character becomes U+FFFD) and resets the decoder.</summary>
    public string Flush() => Convert(ReadOnlySpan<byte>.Empty, flush: true);

    /// <summary>Drops any held-back bytes.</summary>
    public void Reset() => _utf8.Reset();

    private string Convert(ReadOnlySpan<byte> bytes, bool flush)
    {
        int needed = _utf8.GetCharCount(bytes, flush);
        if (needed > _chars.Length) _chars = new char[Math.Max(needed, _chars.Length * 2)];
        int count = _utf8.GetChars(bytes, _chars, flush);
        return count == 0 ? string.Empty : new string(_chars, 0, count);
    }
}
