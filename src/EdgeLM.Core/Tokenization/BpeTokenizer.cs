using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Text;

namespace EdgeLM.Tokenization;

/// <summary>Token types as llama.cpp stores them in tokenizer.ggml.token_type.</summary>
public enum TokenKind
{
    Normal = 1,
    Unknown = 2,
    /// <summary>Special tokens such as &lt;|im_end|&gt;: matched in text only when special tokens are parsed.</summary>
    Control = 3,
    /// <summary>Added tokens that are not special (Qwen3's &lt;think&gt;): always matched in text before pre-tokenization.</summary>
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

/// <summary>
/// Byte-level BPE tokenizer producing exactly the ids of Hugging Face <c>tokenizers</c> for the Qwen2/2.5/3 family:
/// added tokens are cut out of the raw text first, the rest is NFC-normalized, split by the Qwen2 pre-tokenizer,
/// mapped to GPT-2 byte-level symbols and merged by merge rank.
/// A tiktoken vocabulary (Qwen v1's qwen.tiktoken, see <see cref="FromTiktoken"/>) runs in rank mode: two adjacent
/// pieces merge when their concatenated bytes are a token, lowest token rank first (tiktoken's byte_pair_merge);
/// Qwen's QWenTokenizer NFC-normalizes its input first, as done here for both modes.
/// Instances are immutable apart from an internal word cache and are safe to share between threads.
/// </summary>
/// <remarks>
/// Lone UTF-16 surrogates in input text cannot reach the reference implementation (Rust strings are valid UTF-8);
/// each one is replaced by one U+FFFD before encoding, as .NET's UTF-8 encoder and Python's errors="replace" do.
/// </remarks>
public sealed partial class BpeTokenizer
{
    private const int MaxCachedWordLength = 64;
    private const int MaxCacheEntries = 1 << 16;
    private const int SmallWordSymbols = 64;

    private readonly string[] _tokenTexts;
    private readonly byte[][] _tokenBytes;
    private readonly TokenKind[] _kinds;
    private readonly Dictionary<string, int> _idByText;
    private (int Left, int Right)[]? _merges; // rank mode: derived on first use (GGUF export)
    private readonly bool _rankBased;
    private readonly Dictionary<long, long> _mergeByPair;
    private readonly int[] _byteTokenIds = new int[256];
    private readonly AddedTokenMatcher _addedTokens;
    private readonly int[] _endOfGenerationIds;

    private readonly ConcurrentDictionary<string, int[]> _wordCache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _wordCacheLookup;
    private int _wordCacheCount;

    // Loading loops over ~150k tokens and merges once; skipping tier-0 JIT roughly halves a cold load.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private BpeTokenizer(string[] tokenTexts, TokenKind[] kinds, IReadOnlyList<(string Left, string Right)> merges,
        int? bosId, int? eosId, int? padId, bool addBos, string? chatTemplate, bool rankBased = false)
    {
        _rankBased = rankBased;
        int vocabSize = tokenTexts.Length;
        _tokenTexts = tokenTexts;
        _kinds = kinds;
        _tokenBytes = new byte[vocabSize][];
        _idByText = new Dictionary<string, int>(vocabSize, StringComparer.Ordinal);
        var addedTokens = new List<(string Text, int Id, bool Special)>();

        for (int id = 0; id < vocabSize; id++)
        {
            string text = tokenTexts[id];
            switch (kinds[id])
            {
                case TokenKind.Control or TokenKind.UserDefined:
                    _tokenBytes[id] = Encoding.UTF8.GetBytes(text);
                    if (text.Length > 0) addedTokens.Add((text, id, kinds[id] == TokenKind.Control));
                    break;
                case TokenKind.Unused:
                    _tokenBytes[id] = [];
                    break;
                default:
                    // Vocabularies written by other tools may hold a token that is not byte-level text; keep its UTF-8.
                    _tokenBytes[id] = ByteLevel.TryDecode(text, out byte[] bytes) ? bytes : Encoding.UTF8.GetBytes(text);
                    _idByText.TryAdd(text, id);
                    break;
            }
        }
        // Ordinary (BPE) tokens take precedence for a text that is both; added tokens are found by the matcher anyway.
        foreach (var (text, id, _) in addedTokens) _idByText.TryAdd(text, id);
        for (int id = 0; id < vocabSize; id++)
            if (kinds[id] == TokenKind.Unused) _idByText.TryAdd(tokenTexts[id], id);

        for (int b = 0; b < 256; b++)
        {
            string symbol = ByteLevel.ByteToChar((byte)b).ToString();
            if (!TryGetBpeId(symbol, out _byteTokenIds[b]))
                throw new InvalidDataException($"tokenizer vocabulary lacks the byte-level token '{symbol}' for byte 0x{b:X2}");
        }

        if (rankBased)
        {
            _mergeByPair = BuildRankPairs();
        }
        else
        {
            _merges = new (int, int)[merges.Count];
            _mergeByPair = new Dictionary<long, long>(merges.Count, PairKeyComparer.Instance);
            var lookup = _idByText.GetAlternateLookup<ReadOnlySpan<char>>();
            char[] concatBuffer = new char[256];
            for (int rank = 0; rank < merges.Count; rank++)
            {
                var (left, right) = merges[rank];
                if (!TryGetBpeId(left, out int leftId) || !TryGetBpeId(right, out int rightId))
                    throw new InvalidDataException($"tokenizer merge {rank} '{left} {right}' refers to a token that is not in the vocabulary");
                int length = left.Length + right.Length;
                if (length > concatBuffer.Length) concatBuffer = new char[length * 2];
                left.CopyTo(concatBuffer);
                right.CopyTo(concatBuffer.AsSpan(left.Length));
                if (!lookup.TryGetValue(concatBuffer.AsSpan(0, length), out int resultId) || kinds[resultId] is not (TokenKind.Normal or TokenKind.Unknown or TokenKind.Byte))
                    throw new InvalidDataException($"tokenizer merge {rank} '{left} {right}' produces a token that is not in the vocabulary");
                _merges[rank] = (leftId, rightId);
                // A repeated pair takes its last rank: Hugging Face builds its merge map by inserting in file order.
                _mergeByPair[PairKey(leftId, rightId)] = ((long)rank << 32) | (uint)resultId;
            }
        }

        _addedTokens = new AddedTokenMatcher(addedTokens);
        _wordCacheLookup = _wordCache.GetAlternateLookup<ReadOnlySpan<char>>();

        BosId = CheckedId(bosId, "bos");
        EosId = CheckedId(eosId, "eos");
        PadId = CheckedId(padId, "pad");
        AddBos = addBos && BosId.HasValue;
        ChatTemplate = chatTemplate;

        var endIds = new List<int>();
        foreach (int? id in new[] { EosId, TokenId("<|im_end|>"), TokenId("<|endoftext|>") })
            if (id is int value && !endIds.Contains(value)) endIds.Add(value);
        _endOfGenerationIds = endIds.ToArray();
    }

    /// <summary>
    /// Rank mode: every pair of tokens whose concatenation is a token, mapped to that token (its id is its rank).
    /// Enumerating the split points of each token finds all of them, so lookups during encoding stay O(1).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private Dictionary<long, long> BuildRankPairs()
    {
        var pairs = new Dictionary<long, long>(_tokenTexts.Length * 4, PairKeyComparer.Instance);
        var lookup = _idByText.GetAlternateLookup<ReadOnlySpan<char>>();
        for (int id = 0; id < _tokenTexts.Length; id++)
        {
            if (_kinds[id] != TokenKind.Normal) continue;
            string text = _tokenTexts[id];
            for (int split = 1; split < text.Length; split++)
            {
                if (lookup.TryGetValue(text.AsSpan(0, split), out int left) && _kinds[left] == TokenKind.Normal
                    && lookup.TryGetValue(text.AsSpan(split), out int right) && _kinds[right] == TokenKind.Normal)
                    pairs[PairKey(left, right)] = ((long)id << 32) | (uint)id;
            }
        }
        return pairs;
    }

    /// <summary>
    /// The merge list equivalent to a rank vocabulary, as llama.cpp's converter derives it (QwenModel.bpe with
    /// max_rank): each multi-byte token, merged from its bytes using only lower-ranked tokens, must end as two pieces.
    /// </summary>
    private (int Left, int Right)[] DeriveMergesFromRanks()
    {
        var merges = new List<(int, int)>();
        var parts = new List<int>();
        for (int id = 0; id < _tokenTexts.Length; id++)
        {
            if (_kinds[id] != TokenKind.Normal || _tokenBytes[id].Length < 2) continue;
            parts.Clear();
            foreach (byte b in _tokenBytes[id]) parts.Add(_byteTokenIds[b]);
            while (true)
            {
                long best = long.MaxValue;
                int at = -1;
                for (int i = 0; i + 1 < parts.Count; i++)
                {
                    long packed = PairMerge(parts[i], parts[i + 1]);
                    if (packed < best && (int)(packed >> 32) < id) { best = packed; at = i; }
                }
                if (at < 0) break;
                parts[at] = (int)(best & 0xFFFFFFFF);
                parts.RemoveAt(at + 1);
            }
            if (parts.Count != 2)
                throw new InvalidDataException($"token {id} cannot be built from two lower-ranked tokens; the rank vocabulary has no merge-list equivalent");
            merges.Add((parts[0], parts[1]));
        }
        return merges.ToArray();
    }

    private (int Left, int Right)[] Merges => _merges ??= DeriveMergesFromRanks();

    /// <summary>True for a tiktoken (rank) vocabulary such as Qwen v1's.</summary>
    public bool IsRankBased => _rankBased;

    private bool TryGetBpeId(string text, out int id) =>
        _idByText.TryGetValue(text, out id) && _kinds[id] is TokenKind.Normal or TokenKind.Unknown or TokenKind.Byte;

    private int? CheckedId(int? id, string what) => id is int value && (value < 0 || value >= VocabSize)
        ? throw new InvalidDataException($"tokenizer {what} token id {value} is outside the vocabulary (size {VocabSize})")
        : id;

    /// <summary>Number of token ids, including added and unused ones.</summary>
    public int VocabSize => _tokenTexts.Length;

    /// <summary>
    /// Ids below this are real tokens; above it only the unused "[PADn]" rows that GGUF files carry to match the
    /// model's embedding size. A tokenizer.json of the same model has exactly this many tokens.
    /// </summary>
    public int UsedVocabSize
    {
        get
        {
            int n = _kinds.Length;
            while (n > 0 && _kinds[n - 1] == TokenKind.Unused) n--;
            return n;
        }
    }
    public int? BosId { get; }
    public int? EosId { get; }
    public int? PadId { get; }
    /// <summary>Whether a prompt should start with <see cref="BosId"/> (false for Qwen).</summary>
    public bool AddBos { get; }
    /// <summary>The Jinja chat template from tokenizer_config.json or GGUF, if any.</summary>
    public string? ChatTemplate { get; }
    /// <summary>Ids that end generation: eos, then &lt;|im_end|&gt; and &lt;|endoftext|&gt; when the vocabulary has them.</summary>
    public IReadOnlyList<int> EndOfGenerationIds => _endOfGenerationIds;
    /// <summary>Number of merge rules (derived from the ranks in rank mode).</summary>
    public int MergeCount => Merges.Length;

    /// <summary>The token's vocabulary string as stored in tokenizer.json / GGUF: byte-level text for ordinary tokens
    /// (" the" is "Ġthe"), the literal text for added tokens.</summary>
    public string TokenText(int id) => _tokenTexts[CheckId(id)];

    /// <summary>The bytes the token stands for (added tokens: their UTF-8 text; unused tokens: nothing).</summary>
    public byte[] TokenBytes(int id) => (byte[])_tokenBytes[CheckId(id)].Clone();

    internal ReadOnlySpan<byte> TokenBytesSpan(int id) => _tokenBytes[CheckId(id)];

    public TokenKind GetTokenKind(int id) => _kinds[CheckId(id)];

    /// <summary>True for control tokens (&lt;|im_start|&gt;, &lt;|endoftext|&gt;, ...).</summary>
    public bool IsSpecial(int id) => _kinds[CheckId(id)] == TokenKind.Control;

    /// <summary>The id of a vocabulary string (see <see cref="TokenText"/>), or null.</summary>
    public int? TokenId(string tokenText) => _idByText.TryGetValue(tokenText, out int id) ? id : null;

    private int CheckId(int id) => (uint)id < (uint)_tokenTexts.Length
        ? id
        : throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is outside the vocabulary (size {_tokenTexts.Length})");

    /// <summary>Encodes text to token ids, without BOS (see <see cref="AddBos"/>).</summary>
    /// <param name="parseSpecial">When false, control tokens written in the text are encoded as plain text (use for
    /// untrusted text); user-defined added tokens such as &lt;think&gt; are still matched, as in Hugging Face and llama.cpp.</param>
    public int[] Encode(string text, bool parseSpecial = true)
    {
        var ids = new List<int>(text.Length / 3 + 4);
        Encode(text, ids, parseSpecial);
        return ids.ToArray();
    }

    /// <summary>Appends the ids of <paramref name="text"/> to <paramref name="output"/>.</summary>
    public void Encode(string text, List<int> output, bool parseSpecial = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(output);
        text = QwenPreTokenizer.ReplaceLoneSurrogates(text);
        int pos = 0;
        while (pos < text.Length)
        {
            bool found = _addedTokens.FindNext(text, pos, parseSpecial, out int matchStart, out int matchLength, out int matchId);
            int plainEnd = found ? matchStart : text.Length;
            if (plainEnd > pos) EncodePlain(text.AsSpan(pos, plainEnd - pos), output);
            if (!found) break;
            output.Add(matchId);
            pos = matchStart + matchLength;
        }
    }

    private void EncodePlain(ReadOnlySpan<char> text, List<int> output)
    {
        if (!Ascii.IsValid(text))
        {
            string segment = text.ToString();
            if (!segment.IsNormalized(NormalizationForm.FormC)) text = segment.Normalize(NormalizationForm.FormC);
        }
        int pos = 0;
        while (pos < text.Length)
        {
            int end = QwenPreTokenizer.NextWordEnd(text, pos);
            EncodeWord(text[pos..end], output);
            pos = end;
        }
    }

    private void EncodeWord(ReadOnlySpan<char> word, List<int> output)
    {
        bool cacheable = word.Length <= MaxCachedWordLength;
        if (cacheable && _wordCacheLookup.TryGetValue(word, out int[]? cached))
        {
            output.AddRange(cached);
            return;
        }

        int maxBytes = Encoding.UTF8.GetMaxByteCount(word.Length);
        byte[]? rentedBytes = null;
        int[]? rentedSymbols = null;
        Span<byte> bytes = maxBytes <= 512 ? stackalloc byte[maxBytes] : (rentedBytes = ArrayPool<byte>.Shared.Rent(maxBytes));
        try
        {
            int byteCount = Encoding.UTF8.GetBytes(word, bytes);
            Span<int> symbols = byteCount <= 512 ? stackalloc int[byteCount] : (rentedSymbols = ArrayPool<int>.Shared.Rent(byteCount)).AsSpan(0, byteCount);
            for (int i = 0; i < byteCount; i++) symbols[i] = _byteTokenIds[bytes[i]];
            int count = MergeSymbols(symbols);
            output.AddRange(symbols[..count]);
            if (cacheable) AddToCache(word, symbols[..count].ToArray());
        }
        finally
        {
            if (rentedBytes != null) ArrayPool<byte>.Shared.Return(rentedBytes);
            if (rentedSymbols != null) ArrayPool<int>.Shared.Return(rentedSymbols);
        }
    }

    private void AddToCache(ReadOnlySpan<char> word, int[] ids)
    {
        // Bounded by wholesale clearing: simple, lock-free, and the working set of a text refills it quickly.
        if (Interlocked.Increment(ref _wordCacheCount) > MaxCacheEntries)
        {
            _wordCache.Clear();
            Interlocked.Exchange(ref _wordCacheCount, 0);
        }
        _wordCacheLookup.TryAdd(word, ids);
    }

    /// <summary>Applies merges to the symbols in place; returns the number of symbols left.</summary>
    internal int MergeSymbols(Span<int> symbols) =>
        symbols.Length <= SmallWordSymbols ? MergeByScan(symbols) : MergeByHeap(symbols);

    private static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>long.GetHashCode of a packed pair is left ^ right, which collides for every pair with the same XOR;
    /// a multiplicative mix spreads the keys.</summary>
    private sealed class PairKeyComparer : IEqualityComparer<long>
    {
        public static readonly PairKeyComparer Instance = new();
        public bool Equals(long x, long y) => x == y;
        public int GetHashCode(long key) => (int)((ulong)key * 0x9E3779B97F4A7C15UL >> 32);
    }

    /// <summary>Packed (rank &lt;&lt; 32 | result id) of a mergeable pair, or long.MaxValue. Ordering by the packed value
    /// orders by rank.</summary>
    private long PairMerge(int left, int right) =>
        _mergeByPair.TryGetValue(PairKey(left, right), out long packed) ? packed : long.MaxValue;

    /// <summary>Quadratic but allocation-free merge for short words: repeatedly merges the lowest-ranked pair,
    /// leftmost first on ties, exactly the order of Hugging Face's heap-based BPE.</summary>
    internal int MergeByScan(Span<int> symbols)
    {
        int n = symbols.Length;
        if (n < 2) return n;
        Span<long> pairs = stackalloc long[n - 1];
        for (int i = 0; i < n - 1; i++) pairs[i] = PairMerge(symbols[i], symbols[i + 1]);
        while (n > 1)
        {
            long best = long.MaxValue;
            int bestAt = -1;
            for (int i = 0; i < n - 1; i++)
                if (pairs[i] < best) { best = pairs[i]; bestAt = i; }
            if (bestAt < 0) break;

            symbols[bestAt] = (int)(best & 0xFFFFFFFF);
            symbols[(bestAt + 2)..n].CopyTo(symbols[(bestAt + 1)..]);
            if (bestAt + 1 < n - 1) pairs[(bestAt + 2)..(n - 1)].CopyTo(pairs[(bestAt + 1)..]);
            n--;
            if (bestAt < n - 1) pairs[bestAt] = PairMerge(symbols[bestAt], symbols[bestAt + 1]);
            if (bestAt > 0) pairs[bestAt - 1] = PairMerge(symbols[bestAt - 1], symbols[bestAt]);
        }
        return n;
    }

    /// <summary>O(n log n) merge for long words (a megabyte without spaces must not take quadratic time):
    /// a doubly linked list of symbols and a priority queue ordered by (rank, position), as in Hugging Face.</summary>
    internal int MergeByHeap(Span<int> symbols)
    {
        int n = symbols.Length;
        if (n < 2) return n;
        var next = new int[n];
        var prev = new int[n];
        var alive = new bool[n];
        var queue = new PriorityQueue<int, long>(n);
        for (int i = 0; i < n; i++)
        {
            next[i] = i + 1 < n ? i + 1 : -1;
            prev[i] = i - 1;
            alive[i] = true;
        }
        for (int i = 0; i < n - 1; i++) Enqueue(queue, PairMerge(symbols[i], symbols[i + 1]), i);

        while (queue.TryDequeue(out int at, out long priority))
        {
            int right = next[at];
            if (!alive[at] || right < 0) continue;
            long packed = PairMerge(symbols[at], symbols[right]);
            if (packed == long.MaxValue || (int)(packed >> 32) != (int)(priority >> 32)) continue;

            symbols[at] = (int)(packed & 0xFFFFFFFF);
            alive[right] = false;
            next[at] = next[right];
            if (next[right] >= 0) prev[next[right]] = at;
            if (prev[at] >= 0) Enqueue(queue, PairMerge(symbols[prev[at]], symbols[at]), prev[at]);
            if (next[at] >= 0) Enqueue(queue, PairMerge(symbols[at], symbols[next[at]]), at);
        }

        int count = 0;
        for (int i = 0; i >= 0; i = next[i]) symbols[count++] = symbols[i];
        return count;

        static void Enqueue(PriorityQueue<int, long> queue, long packed, int position)
        {
            if (packed != long.MaxValue) queue.Enqueue(position, (packed & ~0xFFFFFFFFL) | (uint)position);
        }
    }

    /// <summary>Decodes ids to text; invalid UTF-8 becomes U+FFFD (maximal-subpart replacement, as Rust's from_utf8_lossy).
    /// Special tokens appear as their text.</summary>
    public string Decode(ReadOnlySpan<int> ids)
    {
        int total = 0;
        foreach (int id in ids) total += TokenBytesSpan(id).Length;
        byte[]? rented = null;
        Span<byte> buffer = total <= 1024 ? stackalloc byte[total] : (rented = ArrayPool<byte>.Shared.Rent(total));
        try
        {
            int offset = 0;
            foreach (int id in ids)
            {
                ReadOnlySpan<byte> bytes = _tokenBytes[id];
                bytes.CopyTo(buffer[offset..]);
                offset += bytes.Length;
            }
            return Encoding.UTF8.GetString(buffer[..total]);
        }
        finally
        {
            if (rented != null) ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>A new incremental decoder for generated tokens.</summary>
    public StreamingDecoder CreateStreamingDecoder() => new(this);
}
