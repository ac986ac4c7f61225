using System.Buffers;

namespace EdgeLM.Tokenization;

/// <summary>
/// Finds added tokens (special and user-defined) in raw text, leftmost match first and the longest token at that
/// position, as Hugging Face's AddedVocabulary (Aho-Corasick, leftmost-longest) does.
/// </summary>
internal sealed class AddedTokenMatcher
{
    private readonly SearchValues<char> _firstChars;
    private readonly Dictionary<char, (string Text, int Id, bool Special)[]> _byFirstChar;

    public AddedTokenMatcher(IEnumerable<(string Text, int Id, bool Special)> tokens)
    {
        _byFirstChar = tokens
            .Where(t => t.Text.Length > 0)
            .GroupBy(t => t.Text[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Text.Length).ThenBy(t => t.Id).ToArray());
        _firstChars = SearchValues.Create(_byFirstChar.Keys.ToArray());
    }

    public bool FindNext(string text, int from, bool includeSpecial, out int start, out int length, out int id)
    {
        ReadOnlySpan<char> span = text.AsSpan();
        int pos = from;
        while (pos < span.Length)
        {
            int offset = span[pos..].IndexOfAny(_firstChars);
            if (offset < 0) break;
            pos += offset;
            foreach (var (tokenText, tokenId, special) in _byFirstChar[span[pos]])
            {
                if (special && !includeSpecial) continue;
                if (span[pos..].StartsWith(tokenText, StringComparison.Ordinal))
                {
                    (start, length, id) = (pos, tokenText.Length, tokenId);
                    return true;
                }
            }
            pos++;
        }
        (start, length, id) = (-1, 0, -1);
        return false;
    }
}
