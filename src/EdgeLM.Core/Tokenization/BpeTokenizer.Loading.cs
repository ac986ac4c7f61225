using System.Runtime.CompilerServices;
using System.Text.Json;
using EdgeLM.Formats.Gguf;

namespace EdgeLM.Tokenization;

public sealed partial class BpeTokenizer
{
    /// <summary>The Qwen2 pre-tokenizer regex, the only one implemented (see <see cref="QwenPreTokenizer"/>).</summary>
    public const string QwenPreTokenizerRegex =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Upper bound on token ids accepted from files, so that a hostile id cannot force a huge allocation.</summary>
    private const int MaxVocabSize = 1 << 24;

    private static readonly JsonDocumentOptions JsonOptions = new() { MaxDepth = 64 };

    // ---------------------------------------------------------------- tokenizer.json

    /// <summary>
    /// Loads a Hugging Face tokenizer.json (byte-level BPE with the Qwen2 pre-tokenizer) and, when present beside it,
    /// tokenizer_config.json for the chat template and the bos/eos/pad tokens.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not a supported tokenizer.json.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static BpeTokenizer FromTokenizerJson(string tokenizerJsonPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(tokenizerJsonPath);
        if (!File.Exists(tokenizerJsonPath))
            throw new FileNotFoundException($"tokenizer file not found: {tokenizerJsonPath}", tokenizerJsonPath);
        string name = Path.GetFileName(tokenizerJsonPath);

        string[] tokenTexts;
        TokenKind[] kinds;
        List<(string, string)> merges;
        using (JsonDocument doc = ParseJson(File.ReadAllBytes(tokenizerJsonPath), name))
        {
            JsonElement root = RequireObject(doc.RootElement, name, "the top level");
            CheckNormalizer(root, name);
            CheckPreTokenizer(root, name);

            JsonElement model = RequireProperty(root, "model", JsonValueKind.Object, name);
            if (model.TryGetProperty("type", out JsonElement type) && type.ValueKind == JsonValueKind.String && type.GetString() != "BPE")
                throw new InvalidDataException($"{name}: model type '{type.GetString()}' is not supported (only BPE)");
            CheckBpeOptions(model, name);

            var ids = new Dictionary<int, (string Text, TokenKind Kind)>();
            foreach (JsonProperty entry in RequireProperty(model, "vocab", JsonValueKind.Object, name).EnumerateObject())
            {
                int id = ReadTokenId(entry.Value, name, $"vocab entry '{entry.Name}'");
                if (!ids.TryAdd(id, (entry.Name, TokenKind.Normal)))
                    throw new InvalidDataException($"{name}: token id {id} appears twice in the vocabulary");
            }

            if (root.TryGetProperty("added_tokens", out JsonElement added) && added.ValueKind != JsonValueKind.Null)
            {
                if (added.ValueKind != JsonValueKind.Array) throw new InvalidDataException($"{name}: 'added_tokens' should be an array");
                foreach (JsonElement token in added.EnumerateArray())
                {
                    RequireObject(token, name, "an added_tokens entry");
                    int id = ReadTokenId(RequireProperty(token, "id", JsonValueKind.Number, name), name, "added token id");
                    string content = RequireProperty(token, "content", JsonValueKind.String, name).GetString()!;
                    bool special = token.TryGetProperty("special", out JsonElement sp) && sp.ValueKind == JsonValueKind.True;
                    // Same rule as llama.cpp's convert_hf_to_gguf.py: special, or looks like <|...|>, makes a control token.
                    ids[id] = (content, special || LooksSpecial(content) ? TokenKind.Control : TokenKind.UserDefined);
                }
            }

            (tokenTexts, kinds) = DenseVocabulary(ids, name);
            merges = ReadMerges(RequireProperty(model, "merges", JsonValueKind.Array, name), name);
        }

        var config = ReadTokenizerConfig(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(tokenizerJsonPath))!, "tokenizer_config.json"));
        int? FindId(string? text, string what)
        {
            if (text is null) return null;
            int index = Array.IndexOf(tokenTexts, text);
            return index >= 0 ? index : throw new InvalidDataException($"tokenizer_config.json: {what} '{text}' is not in the vocabulary");
        }
        return new BpeTokenizer(tokenTexts, kinds, merges,
            FindId(config.Bos, "bos_token"), FindId(config.Eos, "eos_token"), FindId(config.Pad, "pad_token"),
            config.AddBos, config.ChatTemplate);
    }

    private static bool LooksSpecial(string text) => text.StartsWith("<|", StringComparison.Ordinal) && text.EndsWith("|>", StringComparison.Ordinal);

    private static JsonDocument ParseJson(byte[] json, string name)
    {
        try
        {
            return JsonDocument.Parse(json, JsonOptions);
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{name}: malformed JSON: {ex.Message}", ex);
        }
    }

    private static JsonElement RequireObject(JsonElement element, string name, string what) =>
        element.ValueKind == JsonValueKind.Object ? element : throw new InvalidDataException($"{name}: {what} should be a JSON object");

    private static JsonElement RequireProperty(JsonElement parent, string property, JsonValueKind kind, string name)
    {
        if (!parent.TryGetProperty(property, out JsonElement value))
            throw new InvalidDataException($"{name}: missing '{property}'");
        if (value.ValueKind != kind && !(kind == JsonValueKind.True && value.ValueKind == JsonValueKind.False))
            throw new InvalidDataException($"{name}: '{property}' should be {kind}, found {value.ValueKind}");
        return value;
    }

    private static int ReadTokenId(JsonElement value, string name, string what) =>
        value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int id) && id >= 0 && id < MaxVocabSize
            ? id
            : throw new InvalidDataException($"{name}: {what} should be a token id in [0, {MaxVocabSize}), found {value}");

    private static void CheckNormalizer(JsonElement root, string name)
    {
        if (!root.TryGetProperty("normalizer", out JsonElement normalizer) || normalizer.ValueKind == JsonValueKind.Null) 
            throw new InvalidDataException($"{name}: normalizer is missing; only NFC (as in Qwen) is supported");
        if (!(normalizer.ValueKind == JsonValueKind.Object && normalizer.TryGetProperty("type", out JsonElement type) && type.ValueKind == JsonValueKind.String && type.GetString() == "NFC"))
            throw new InvalidDataException($"{name}: unsupported normalizer {Truncate(normalizer.GetRawText())}; only NFC (as in Qwen) is supported");
    }

    private static void CheckPreTokenizer(JsonElement root, string name)
    {
        if (!root.TryGetProperty("pre_tokenizer", out JsonElement pre) || !ContainsQwenSplit(pre))
            throw new InvalidDataException($"{name}: unsupported pre-tokenizer; only Qwen2's byte-level split regex is implemented");
    }

    private static bool ContainsQwenSplit(JsonElement element)
    {
        if (element.ValueKind == JsonValueKind.Array)
            return element.EnumerateArray().Any(ContainsQwenSplit);
        if (element.ValueKind != JsonValueKind.Object) return false;
        if (element.TryGetProperty("type", out JsonElement type) && type.ValueKind == JsonValueKind.String && type.GetString() == "Split"
            && element.TryGetProperty("pattern", out JsonElement pattern) && pattern.ValueKind == JsonValueKind.Object
            && pattern.TryGetProperty("Regex", out JsonElement regex) && regex.ValueKind == JsonValueKind.String)
            return regex.GetString() == QwenPreTokenizerRegex;
        return element.TryGetProperty("pretokenizers", out JsonElement children) && ContainsQwenSplit(children);
    }

    private static void CheckBpeOptions(JsonElement model, string name)
    {
        foreach (string option in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            if (model.TryGetProperty(option, out JsonElement v) && v.ValueKind == JsonValueKind.String && v.GetString()!.Length > 0)
                throw new InvalidDataException($"{name}: BPE option '{option}' is not supported");
        foreach (string option in new[] { "byte_fallback", "ignore_merges" })
            if (model.TryGetProperty(option, out JsonElement v) && v.ValueKind == JsonValueKind.True)
                throw new InvalidDataException($"{name}: BPE option '{option}' is not supported");
        if (model.TryGetProperty("dropout", out JsonElement dropout) && dropout.ValueKind == JsonValueKind.Number && dropout.GetDouble() != 0)
            throw new InvalidDataException($"{name}: BPE dropout is not supported");
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static List<(string, string)> ReadMerges(JsonElement merges, string name)
    {
        var result = new List<(string, string)>(merges.GetArrayLength());
        int index = 0;
        foreach (JsonElement merge in merges.EnumerateArray())
        {
            if (merge.ValueKind == JsonValueKind.String)
                result.Add(SplitMerge(merge.GetString()!, index, name));
            else if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2
                     && merge[0].ValueKind == JsonValueKind.String && merge[1].ValueKind == JsonValueKind.String)
                result.Add((merge[0].GetString()!, merge[1].GetString()!));
            else
                throw new InvalidDataException($"{name}: merge {index} should be \"a b\" or [\"a\", \"b\"], found {Truncate(merge.GetRawText())}");
            index++;
        }
        return result;
    }

    private static (string, string) SplitMerge(string merge, int index, string source)
    {
        // Byte-level tokens never contain a space (it is 'Ġ'), so the single space separates the pair.
        int space = merge.IndexOf(' ', 1);
        if (space < 0 || space == merge.Length - 1 || merge.IndexOf(' ', space + 1) >= 0)
            throw new InvalidDataException($"{source}: merge {index} '{Truncate(merge)}' is not two tokens separated by one space");
        return (merge[..space], merge[(space + 1)..]);
    }

    private static (string[] Texts, TokenKind[] Kinds) DenseVocabulary(Dictionary<int, (string Text, TokenKind Kind)> ids, string name)
    {
        if (ids.Count == 0) throw new InvalidDataException($"{name}: the vocabulary is empty");
        int size = ids.Keys.Max() + 1;
        var texts = new string[size];
        var kinds = new TokenKind[size];
        for (int id = 0; id < size; id++)
            (texts[id], kinds[id]) = ids.TryGetValue(id, out var entry) ? entry : ($"[PAD{id}]", TokenKind.Unused);
        return (texts, kinds);
    }

    private sealed record TokenizerConfig(string? ChatTemplate, string? Bos, string? Eos, string? Pad, bool AddBos);

    private static TokenizerConfig ReadTokenizerConfig(string path)
    {
        if (!File.Exists(path)) return new TokenizerConfig(null, null, null, null, false);
        const string name = "tokenizer_config.json";
        using JsonDocument doc = ParseJson(File.ReadAllBytes(path), name);
        JsonElement root = RequireObject(doc.RootElement, name, "the top level");

        string? TokenText(string property)
        {
            if (!root.TryGetProperty(property, out JsonElement v)) return null;
            return v.ValueKind switch
            {
                JsonValueKind.Null => null,
                JsonValueKind.String => v.GetString(),
                JsonValueKind.Object when v.TryGetProperty("content", out JsonElement c) && c.ValueKind == JsonValueKind.String => c.GetString(),
                _ => throw new InvalidDataException($"{name}: '{property}' should be a string or an object with 'content'"),
            };
        }

        string? template = null;
        if (root.TryGetProperty("chat_template", out JsonElement t))
        {
            template = t.ValueKind switch
            {
                JsonValueKind.Null => null,
                JsonValueKind.String => t.GetString(),
                // A list of named templates: the one named "default", else the first.
                JsonValueKind.Array => t.EnumerateArray()
                    .Where(e => e.ValueKind == JsonValueKind.Object && e.TryGetProperty("template", out JsonElement x) && x.ValueKind == JsonValueKind.String)
                    .OrderBy(e => e.TryGetProperty("name", out JsonElement n) && n.ValueKind == JsonValueKind.String && n.GetString() == "default" ? 0 : 1)
                    .Select(e => e.GetProperty("template").GetString())
                    .FirstOrDefault(),
                _ => throw new InvalidDataException($"{name}: 'chat_template' should be a string or a list of named templates"),
            };
        }
        bool addBos = root.TryGetProperty("add_bos_token", out JsonElement ab) && ab.ValueKind == JsonValueKind.True;
        return new TokenizerConfig(template, TokenText("bos_token"), TokenText("eos_token"), TokenText("pad_token"), addBos);
    }

    private static string Truncate(string s) => s.Length <= 60 ? s : s[..60] + "...";

    // ---------------------------------------------------------------- tiktoken (Qwen v1)

    /// <summary>Number of special tokens Qwen v1 appends after its ranks: &lt;|endoftext|&gt;, &lt;|im_start|&gt;,
    /// &lt;|im_end|&gt; and &lt;|extra_0|&gt;..&lt;|extra_204|&gt; (tokenization_qwen.py's SPECIAL_TOKENS).</summary>
    public const int QwenTiktokenSpecialCount = 3 + 205;

    /// <summary>Qwen v1's special tokens in id order; the first gets the id equal to the number of ranks.</summary>
    public static IReadOnlyList<string> QwenTiktokenSpecialTokens { get; } =
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>", .. Enumerable.Range(0, 205).Select(i => $"<|extra_{i}|>")];

    /// <summary>
    /// ChatML as Qwen-Chat's make_context builds it (qwen_generation_utils.py), with its default system prompt; used
    /// when a Qwen v1 folder's tokenizer_config.json carries no chat template.
    /// </summary>
    public const string QwenChatMLTemplate =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}" +
        "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}" +
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    /// <summary>A tokenizer.json, or a qwen.tiktoken file (by its .tiktoken extension).</summary>
    public static BpeTokenizer FromFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return path.EndsWith(".tiktoken", StringComparison.OrdinalIgnoreCase) ? FromTiktoken(path) : FromTokenizerJson(path);
    }

    /// <summary>
    /// Loads Qwen v1's qwen.tiktoken: one "base64-bytes rank" line per token, ranks 0..N-1 (the token ids), then
    /// Qwen's 208 special tokens from id N. Pre-tokenization is Qwen's PAT_STR, the same regex as Qwen2's.
    /// tokenizer_config.json beside it may supply a chat template; otherwise Qwen-Chat's ChatML is used.
    /// </summary>
    /// <exception cref="InvalidDataException">A malformed line, a duplicate token or rank, or ranks with gaps.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static BpeTokenizer FromTiktoken(string tiktokenPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(tiktokenPath);
        if (!File.Exists(tiktokenPath)) throw new FileNotFoundException($"tokenizer file not found: {tiktokenPath}", tiktokenPath);
        string name = Path.GetFileName(tiktokenPath);
        var byRank = new Dictionary<int, byte[]>();
        int lineNumber = 0;
        foreach (string line in File.ReadLines(tiktokenPath))
        {
            lineNumber++;
            if (line.Length == 0) continue;
            int space = line.IndexOf(' ');
            if (space <= 0 || line.IndexOf(' ', space + 1) >= 0)
                throw new InvalidDataException($"{name}:{lineNumber}: expected 'base64 rank', found '{Truncate(line)}'");
            byte[] bytes;
            try { bytes = Convert.FromBase64String(line[..space]); }
            catch (FormatException) { throw new InvalidDataException($"{name}:{lineNumber}: '{Truncate(line[..space])}' is not base64"); }
            if (bytes.Length == 0) throw new InvalidDataException($"{name}:{lineNumber}: empty token");
            if (!int.TryParse(line.AsSpan(space + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int rank)
                || rank >= MaxVocabSize - QwenTiktokenSpecialCount)
                throw new InvalidDataException($"{name}:{lineNumber}: bad rank '{Truncate(line[(space + 1)..])}'");
            if (!byRank.TryAdd(rank, bytes)) throw new InvalidDataException($"{name}:{lineNumber}: rank {rank} appears twice");
        }
        int count = byRank.Count;
        if (count == 0) throw new InvalidDataException($"{name}: no tokens");
        var ranks = new string[count];
        for (int rank = 0; rank < count; rank++)
        {
            if (!byRank.TryGetValue(rank, out byte[]? bytes))
                throw new InvalidDataException($"{name}: ranks are not 0..{count - 1} (rank {rank} is missing)");
            ranks[rank] = ByteLevel.Encode(bytes);
        }
        var config = ReadTokenizerConfig(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(tiktokenPath))!, "tokenizer_config.json"));
        return QwenRankTokenizer(ranks, config.ChatTemplate ?? QwenChatMLTemplate, name);
    }

    /// <summary>
    /// The Qwen v1 tokenizer whose ranks are this tokenizer's ordinary tokens (ids 0..N-1), as the tiktoken file
    /// <see cref="WriteTiktoken"/> writes would load; Qwen's special tokens follow.
    /// </summary>
    public BpeTokenizer ToQwenTiktoken()
    {
        int count = 0;
        while (count < _kinds.Length && _kinds[count] == TokenKind.Normal) count++;
        if (count == 0) throw new InvalidOperationException("the tokenizer has no ordinary tokens");
        return QwenRankTokenizer(_tokenTexts[..count], QwenChatMLTemplate, "tokenizer");
    }

    private static BpeTokenizer QwenRankTokenizer(string[] rankTexts, string chatTemplate, string source)
    {
        int count = rankTexts.Length;
        var texts = new string[count + QwenTiktokenSpecialCount];
        var kinds = new TokenKind[texts.Length];
        var seen = new HashSet<string>(count, StringComparer.Ordinal);
        for (int rank = 0; rank < count; rank++)
        {
            (texts[rank], kinds[rank]) = (rankTexts[rank], TokenKind.Normal);
            if (!seen.Add(rankTexts[rank])) throw new InvalidDataException($"{source}: the bytes of rank {rank} appear twice");
        }
        for (int i = 0; i < QwenTiktokenSpecialCount; i++) (texts[count + i], kinds[count + i]) = (QwenTiktokenSpecialTokens[i], TokenKind.Control);
        // QWenTokenizer's eod token ends documents and replies; llama.cpp's converter also makes it bos.
        return new BpeTokenizer(texts, kinds, [], bosId: count, eosId: count, padId: null, addBos: false, chatTemplate, rankBased: true);
    }

    /// <summary>
    /// Writes the ordinary tokens as a tiktoken rank file (base64 of the token bytes, space, rank = id), as
    /// QWenTokenizer.save_vocabulary does. The ordinary tokens must be ids 0..N-1; added tokens after them are not
    /// written (a tiktoken file holds ranks only).
    /// </summary>
    public void WriteTiktoken(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        int count = 0;
        while (count < _kinds.Length && _kinds[count] == TokenKind.Normal) count++;
        for (int id = count; id < _kinds.Length; id++)
            if (_kinds[id] == TokenKind.Normal)
                throw new InvalidOperationException($"token {id} is an ordinary token after added ones; tiktoken ranks must be 0..N-1");
        Formats.AtomicFile.Write(path, fs =>
        {
            using var writer = new StreamWriter(fs, new System.Text.UTF8Encoding(false), 1 << 16, leaveOpen: true) { NewLine = "\n" };
            for (int id = 0; id < count; id++)
                writer.WriteLine($"{Convert.ToBase64String(_tokenBytes[id])} {id.ToString(System.Globalization.CultureInfo.InvariantCulture)}");
        });
    }

    // ---------------------------------------------------------------- GGUF

    private const string KeyModel = "tokenizer.ggml.model";
    private const string KeyPre = "tokenizer.ggml.pre";
    private const string KeyTokens = "tokenizer.ggml.tokens";
    private const string KeyTokenType = "tokenizer.ggml.token_type";
    private const string KeyMerges = "tokenizer.ggml.merges";
    private const string KeyBos = "tokenizer.ggml.bos_token_id";
    private const string KeyEos = "tokenizer.ggml.eos_token_id";
    private const string KeyPad = "tokenizer.ggml.padding_token_id";
    private const string KeyAddBos = "tokenizer.ggml.add_bos_token";
    private const string KeyChatTemplate = "tokenizer.chat_template";

    /// <summary>Reads the tokenizer llama.cpp embeds in GGUF metadata (model "gpt2", pre-tokenizer "qwen2").</summary>
    /// <exception cref="InvalidDataException">The metadata has no tokenizer, or one this class does not implement.</exception>
    public static BpeTokenizer FromGgufMetadata(GgufMetadata md)
    {
        ArgumentNullException.ThrowIfNull(md);
        string model = md.GetString(KeyModel) ?? throw new InvalidDataException($"GGUF has no tokenizer ('{KeyModel}' missing)");
        if (model != "gpt2") throw new InvalidDataException($"GGUF tokenizer model '{model}' is not supported (only gpt2 byte-level BPE)");
        string? pre = md.GetString(KeyPre);
        if (pre != "qwen2") throw new InvalidDataException($"GGUF pre-tokenizer '{pre ?? "(missing)"}' is not supported (only qwen2)");

        string[] tokens = md.GetStringArray(KeyTokens) ?? throw new InvalidDataException($"GGUF '{KeyTokens}' is missing or not a string array");
        if (tokens.Length == 0 || tokens.Length > MaxVocabSize) throw new InvalidDataException($"GGUF '{KeyTokens}' has {tokens.Length} tokens");
        int[]? types = md.GetInt32Array(KeyTokenType);
        if (types != null && types.Length != tokens.Length)
            throw new InvalidDataException($"GGUF '{KeyTokenType}' has {types.Length} entries for {tokens.Length} tokens");
        var kinds = new TokenKind[tokens.Length];
        for (int i = 0; i < kinds.Length; i++)
        {
            int type = types?[i] ?? (int)TokenKind.Normal;
            kinds[i] = type switch
            {
                0 => TokenKind.Normal, // LLAMA_TOKEN_TYPE_UNDEFINED
                >= 1 and <= 6 => (TokenKind)type,
                _ => throw new InvalidDataException($"GGUF token {i} has unknown token type {type}"),
            };
        }

        string[] mergeStrings = md.GetStringArray(KeyMerges) ?? (md.Contains(KeyMerges)
            ? throw new InvalidDataException($"GGUF '{KeyMerges}' is not a string array")
            : []);
        var merges = new List<(string, string)>(mergeStrings.Length);
        for (int i = 0; i < mergeStrings.Length; i++) merges.Add(SplitMerge(mergeStrings[i], i, "GGUF"));

        return new BpeTokenizer(tokens, kinds, merges,
            GgufTokenId(md, KeyBos), GgufTokenId(md, KeyEos), GgufTokenId(md, KeyPad),
            md.GetBool(KeyAddBos) ?? false, md.GetString(KeyChatTemplate));
    }

    private static int? GgufTokenId(GgufMetadata md, string key)
    {
        long? value = md.GetInteger(key);
        if (value is null) return null;
        return value is >= 0 and < MaxVocabSize ? (int)value.Value : throw new InvalidDataException($"GGUF '{key}' = {value} is not a valid token id");
    }

    /// <summary>
    /// Writes this tokenizer as llama.cpp's convert_hf_to_gguf.py does for Qwen2 (gpt2/qwen2, byte-level token strings,
    /// control tokens for special added tokens, "a b" merges). Keys for absent values are removed.
    /// </summary>
    /// <param name="padToVocabSize">
    /// The model's embedding rows when it has more than the tokenizer has tokens (Qwen: 151,936 rows, 151,669 tokens):
    /// llama.cpp requires one token per row, so the rest are written as unused "[PADn]" tokens, as its converter does.
    /// </param>
    public void WriteToGgufMetadata(GgufMetadata md, int? padToVocabSize = null)
    {
        ArgumentNullException.ThrowIfNull(md);
        int total = Math.Max(VocabSize, padToVocabSize ?? 0);
        var texts = new string[total];
        var kinds = new int[total];
        for (int id = 0; id < total; id++)
            (texts[id], kinds[id]) = id < VocabSize ? (_tokenTexts[id], (int)_kinds[id]) : ($"[PAD{id}]", (int)TokenKind.Unused);
        md.Set(KeyModel, GgufValue.Of("gpt2"));
        md.Set(KeyPre, GgufValue.Of("qwen2"));
        md.Set(KeyTokens, GgufValue.Of(texts));
        md.Set(KeyTokenType, GgufValue.Of(kinds));
        md.Set(KeyMerges, GgufValue.Of(Merges.Select(m => _tokenTexts[m.Left] + " " + _tokenTexts[m.Right]).ToArray()));
        SetOrRemove(KeyEos, EosId);
        SetOrRemove(KeyPad, PadId);
        SetOrRemove(KeyBos, BosId);
        md.Set(KeyAddBos, GgufValue.Of(AddBos));
        if (ChatTemplate != null) md.Set(KeyChatTemplate, GgufValue.Of(ChatTemplate));
        else md.Remove(KeyChatTemplate);

        void SetOrRemove(string key, int? id)
        {
            if (id is int value) md.Set(key, GgufValue.Of((uint)value));
            else md.Remove(key);
        }
    }

    // ---------------------------------------------------------------- synthetic

    /// <summary>
    /// A self-contained tokenizer for synthetic models that ship no tokenizer: the 256 byte tokens (ids 0–255 in byte
    /// order), then &lt;|endoftext|&gt;, &lt;|im_start|&gt;, &lt;|im_end|&gt; as control tokens, then unused tokens up to
    /// <paramref name="vocabSize"/>. No merges, so every byte is one token and any (NFC) text round-trips.
    /// </summary>
    public static BpeTokenizer CreateByteLevel(int vocabSize)
    {
        const int Required = 256 + 3;
        if (vocabSize < Required || vocabSize > MaxVocabSize)
            throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, $"a byte-level tokenizer needs between {Required} and {MaxVocabSize} tokens");
        var texts = new string[vocabSize];
        var kinds = new TokenKind[vocabSize];
        for (int b = 0; b < 256; b++) (texts[b], kinds[b]) = (ByteLevel.ByteToChar((byte)b).ToString(), TokenKind.Normal);
        (texts[256], kinds[256]) = ("<|endoftext|>", TokenKind.Control);
        (texts[257], kinds[257]) = ("<|im_start|>", TokenKind.Control);
        (texts[258], kinds[258]) = ("<|im_end|>", TokenKind.Control);
        for (int id = Required; id < vocabSize; id++) (texts[id], kinds[id]) = ($"[PAD{id}]", TokenKind.Unused);
        // The ids Qwen2.5-Instruct's GGUF carries: bos = pad = <|endoftext|>, eos = <|im_end|>, no BOS added.
        return new BpeTokenizer(texts, kinds, [], bosId: 256, eosId: 258, padId: 256, addBos: false, chatTemplate: null);
    }
}
