using System.Diagnostics;
using System.Text;
using EdgeLM.Tests.Support;
using EdgeLM.Tokenization;

namespace EdgeLM.Tests.Tokenization;

public class BpeTokenizerTests
{
    private static BpeTokenizer Qwen => QwenTokenizer.Instance;

    [Fact]
    public void CorpusHasEnoughLines()
    {
        Assert.True(QwenTokenizer.Corpus.Count >= 150, $"only {QwenTokenizer.Corpus.Count} corpus lines");
    }

    [Fact]
    public void EncodesCorpusExactlyAsReference()
    {
        var failures = new List<string>();
        foreach (var (text, expected) in QwenTokenizer.Corpus)
        {
            int[] actual = Qwen.Encode(text);
            if (!actual.SequenceEqual(expected))
                failures.Add($"{Escape(text)}: expected [{string.Join(' ', expected)}] got [{string.Join(' ', actual)}]");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public void EncodesLlamaCppVectors()
    {
        var vectors = QwenTokenizer.LlamaCppVectors();
        Assert.True(vectors.Count > 30);
        var failures = new List<string>();
        foreach (var (text, expected) in vectors)
        {
            int[] actual = Qwen.Encode(text, parseSpecial: false);
            if (!actual.SequenceEqual(expected))
                failures.Add($"{Escape(text)}: expected [{string.Join(' ', expected)}] got [{string.Join(' ', actual)}]");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public void DecodeOfEncodeIsNfcText()
    {
        foreach (var (text, expected) in QwenTokenizer.Corpus)
        {
            Assert.Equal(text.Normalize(NormalizationForm.FormC), Qwen.Decode(expected));
            Assert.Equal(text.Normalize(NormalizationForm.FormC), Qwen.Decode(Qwen.Encode(text)));
        }
    }

    [Fact]
    public void VocabularyAndSpecialTokens()
    {
        Assert.Equal(151669, Qwen.VocabSize);
        Assert.Equal(151387, Qwen.MergeCount);
        Assert.Equal(151643, Qwen.TokenId("<|endoftext|>"));
        Assert.Equal(151644, Qwen.TokenId("<|im_start|>"));
        Assert.Equal(151645, Qwen.TokenId("<|im_end|>"));
        Assert.Equal(151645, Qwen.EosId);
        Assert.Equal(151643, Qwen.PadId);
        Assert.Null(Qwen.BosId);
        Assert.False(Qwen.AddBos);
        Assert.Equal([151645, 151643], Qwen.EndOfGenerationIds);
        Assert.Contains("<|im_start|>", Qwen.ChatTemplate);

        Assert.True(Qwen.IsSpecial(151644));
        Assert.Equal(TokenKind.Control, Qwen.GetTokenKind(151644));
        int think = Qwen.TokenId("<think>")!.Value;
        Assert.False(Qwen.IsSpecial(think));
        Assert.Equal(TokenKind.UserDefined, Qwen.GetTokenKind(think));

        int theId = Qwen.Encode(" the").Single();
        Assert.Equal("Ġthe", Qwen.TokenText(theId));
        Assert.Equal(theId, Qwen.TokenId("Ġthe"));
        Assert.Equal(" the"u8.ToArray(), Qwen.TokenBytes(theId));
        Assert.Equal("<|im_end|>"u8.ToArray(), Qwen.TokenBytes(151645));
        Assert.False(Qwen.IsSpecial(theId));
        Assert.Null(Qwen.TokenId("no such token text"));
        Assert.Throws<ArgumentOutOfRangeException>(() => Qwen.TokenText(Qwen.VocabSize));
        Assert.Throws<ArgumentOutOfRangeException>(() => Qwen.Decode([-1]));
    }

    [Fact]
    public void ParseSpecialFalseTreatsControlTokensAsText()
    {
        const string text = "a<|im_start|>b<think>";
        int[] parsed = Qwen.Encode(text);
        Assert.Contains(151644, parsed);
        int[] plain = Qwen.Encode(text, parseSpecial: false);
        Assert.DoesNotContain(151644, plain);
        // User-defined added tokens are still matched, as in Hugging Face (encode_special_tokens) and llama.cpp.
        Assert.Contains(Qwen.TokenId("<think>")!.Value, plain);
        Assert.Equal(text, Qwen.Decode(plain));
        // "<|" is punctuation to the pre-tokenizer, so the control token's text costs several ordinary tokens.
        Assert.True(plain.Length > parsed.Length + 2);
        Assert.All(plain, id => Assert.False(Qwen.IsSpecial(id)));
    }

    [Fact]
    public void LoneSurrogatesBecomeReplacementCharacter()
    {
        string text = "a\uD800b\uDC00c\uD83D";
        int[] ids = Qwen.Encode(text);
        Assert.Equal(Qwen.Encode("a\uFFFDb\uFFFDc\uFFFD"), ids);
        Assert.Equal("a\uFFFDb\uFFFDc\uFFFD", Qwen.Decode(ids));
    }

    [Fact]
    public void EmptyInputGivesNoTokens()
    {
        Assert.Empty(Qwen.Encode(""));
        Assert.Equal("", Qwen.Decode([]));
    }

    [Fact]
    public void HeapMergeAgreesWithScanMerge()
    {
        var random = new Random(7);
        string alphabet = "aabbeeiinnrsstt Ġ0123456789的一是é";
        for (int trial = 0; trial < 300; trial++)
        {
            int length = 1 + random.Next(100);
            var word = new StringBuilder();
            for (int i = 0; i < length; i++) word.Append(alphabet[random.Next(alphabet.Length)]);
            byte[] bytes = Encoding.UTF8.GetBytes(word.ToString());
            int[] start = bytes.Select(b => Qwen.TokenId(ByteLevelChar(b))!.Value).ToArray();
            int[] byScan = (int[])start.Clone();
            int[] byHeap = (int[])start.Clone();
            int scanCount = Qwen.MergeByScan(byScan);
            int heapCount = Qwen.MergeByHeap(byHeap);
            Assert.Equal(byScan[..scanCount], byHeap[..heapCount]);
            Assert.Equal(bytes, byHeap[..heapCount].SelectMany(Qwen.TokenBytes).ToArray());
        }
    }

    [Fact]
    public void LongWordWithoutSpacesIsFastAndRoundTrips()
    {
        // One 60k-byte word: a quadratic merge would take minutes; the heap merge takes tens of milliseconds.
        // The limit is generous because the machine is shared; the first call only warms up the JIT.
        Qwen.Encode(string.Concat(Enumerable.Repeat("abcdefghij", 100)));
        string text = string.Concat(Enumerable.Repeat("abcdefghij", 3_000)) + string.Concat(Enumerable.Repeat("汉", 10_000));
        var watch = Stopwatch.StartNew();
        int[] ids = Qwen.Encode(text);
        watch.Stop();
        Assert.Equal(text, Qwen.Decode(ids));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"took {watch.Elapsed}");
    }

    // Encoding and loading speed are measured in benchmarks/EdgeLM.Benchmarks (TokenizerBenchmarks), not here.

    [Fact]
    public void IsThreadSafe()
    {
        var corpus = QwenTokenizer.Corpus;
        var tokenizer = BpeTokenizer.FromTokenizerJson(TestPaths.QwenTokenizerJson);
        Parallel.For(0, 8, worker =>
        {
            for (int round = 0; round < 3; round++)
                foreach (var (text, expected) in corpus)
                    Assert.Equal(expected, tokenizer.Encode(text));
        });
    }

    internal static string ByteLevelChar(byte b)
    {
        // Independent re-statement of GPT-2's bytes_to_unicode.
        var printable = Enumerable.Range('!', '~' - '!' + 1).Concat(Enumerable.Range(0xA1, 0xAC - 0xA1 + 1)).Concat(Enumerable.Range(0xAE, 0xFF - 0xAE + 1)).ToList();
        if (printable.Contains(b)) return ((char)b).ToString();
        int n = Enumerable.Range(0, b).Count(x => !printable.Contains(x));
        return ((char)(256 + n)).ToString();
    }

    internal static string Escape(string s)
    {
        var sb = new StringBuilder("\"");
        foreach (char c in s) sb.Append(c < 32 || c > 126 ? $"\\u{(int)c:X4}" : c.ToString());
        return sb.Append('"').ToString();
    }
}
