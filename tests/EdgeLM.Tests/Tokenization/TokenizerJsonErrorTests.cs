using EdgeLM.Tests.Support;
using EdgeLM.Tokenization;

namespace EdgeLM.Tests.Tokenization;

public class TokenizerJsonErrorTests
{
    private const string Pre = "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false}";

    private static string MinimalJson(string vocab, string merges) =>
        "{\"normalizer\":{\"type\":\"NFC\"},\"pre_tokenizer\":" + Pre + ",\"model\":{\"type\":\"BPE\",\"vocab\":" + vocab + ",\"merges\":" + merges + "}}";

    private static string AllBytesVocab(params string[] extra)
    {
        var entries = Enumerable.Range(0, 256).Select(b => BpeTokenizerTests.ByteLevelChar((byte)b)).Concat(extra)
            .Select((text, id) => $"\"{(text == "\"" ? "\\\"" : text == "\\" ? "\\\\" : text)}\":{id}");
        return "{" + string.Join(",", entries) + "}";
    }

    private static string Write(string json)
    {
        string path = Path.Combine(TestPaths.NewTempDir(), "tokenizer.json");
        File.WriteAllText(path, json);
        return path;
    }

    [Fact]
    public void LoadsMinimalTokenizerWithBothMergeSyntaxes()
    {
        var a = BpeTokenizer.FromTokenizerJson(Write(MinimalJson(AllBytesVocab("ab", "abc"), "[\"a b\", \"ab c\"]")));
        var b = BpeTokenizer.FromTokenizerJson(Write(MinimalJson(AllBytesVocab("ab", "abc"), "[[\"a\",\"b\"], [\"ab\",\"c\"]]")));
        Assert.Equal([257], a.Encode("abc"));
        Assert.Equal([257], b.Encode("abc"));
        Assert.Equal([256, a.TokenId("a")!.Value], a.Encode("aba"));
        Assert.Null(a.ChatTemplate);
        Assert.Null(a.EosId);
    }

    [Theory]
    [InlineData("{not json", "malformed JSON")]
    [InlineData("[]", "JSON object")]
    [InlineData("{\"normalizer\":{\"type\":\"NFC\"}}", "pre-tokenizer")]
    [InlineData("{\"normalizer\":{\"type\":\"NFKC\"}}", "normalizer")]
    public void RejectsMalformedFiles(string json, string message)
    {
        var ex = Assert.Throws<InvalidDataException>(() => BpeTokenizer.FromTokenizerJson(Write(json)));
        Assert.Contains(message, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void RejectsBadModelSections()
    {
        void Check(string json, string message)
        {
            var ex = Assert.Throws<InvalidDataException>(() => BpeTokenizer.FromTokenizerJson(Write(json)));
            Assert.Contains(message, ex.Message);
            Assert.DoesNotContain('\n', ex.Message);
        }
        Check("{\"normalizer\":{\"type\":\"NFC\"},\"pre_tokenizer\":" + Pre + "}", "missing 'model'");
        Check(MinimalJson(AllBytesVocab(), "[\"a b\"]"), "not in the vocabulary");
        Check(MinimalJson(AllBytesVocab(), "[\"ab\"]"), "merge 0");
        Check(MinimalJson(AllBytesVocab(), "[42]"), "merge 0");
        Check(MinimalJson("{\"a\":0}", "[]"), "byte");
        Check(MinimalJson("{\"a\":-1}", "[]"), "token id");
        Check(MinimalJson("{\"a\":99999999999}", "[]"), "token id");
        Check(MinimalJson("[1,2]", "[]"), "'vocab'");
        Check(MinimalJson(AllBytesVocab(), "{}"), "'merges'");
        Check(MinimalJson(AllBytesVocab(), "[]").Replace("\"BPE\"", "\"WordPiece\""), "BPE");
    }

    [Fact]
    public void MissingFileIsFileNotFound()
    {
        Assert.Throws<FileNotFoundException>(() => BpeTokenizer.FromTokenizerJson(Path.Combine(TestPaths.NewTempDir(), "nope.json")));
    }
}
