using EdgeLM.Formats.Gguf;
using EdgeLM.Tokenization;

namespace EdgeLM.Tests.Tokenization;

public class GgufTokenizerTests
{
    [Fact]
    public void WriteThenReadGivesIdenticalTokenizer()
    {
        BpeTokenizer original = QwenTokenizer.Instance;
        var md = new GgufMetadata();
        original.WriteToGgufMetadata(md);

        Assert.Equal("gpt2", md.GetString("tokenizer.ggml.model"));
        Assert.Equal("qwen2", md.GetString("tokenizer.ggml.pre"));
        string[] tokens = md.GetStringArray("tokenizer.ggml.tokens")!;
        Assert.Equal("Ġthe", tokens[original.TokenId("Ġthe")!.Value]);
        int[] types = md.GetInt32Array("tokenizer.ggml.token_type")!;
        Assert.Equal(3, types[151644]);
        Assert.Equal(4, types[original.TokenId("<think>")!.Value]);
        Assert.Equal(1, types[original.TokenId("Ġthe")!.Value]);
        Assert.Equal("Ġ Ġ", md.GetStringArray("tokenizer.ggml.merges")![0]);
        Assert.Equal(151645L, md.GetInteger("tokenizer.ggml.eos_token_id"));
        Assert.Equal(151643L, md.GetInteger("tokenizer.ggml.padding_token_id"));
        Assert.False(md.Contains("tokenizer.ggml.bos_token_id"));
        Assert.Equal(false, md.GetBool("tokenizer.ggml.add_bos_token"));
        Assert.Equal(original.ChatTemplate, md.GetString("tokenizer.chat_template"));

        var loaded = BpeTokenizer.FromGgufMetadata(md);
        Assert.Equal(original.VocabSize, loaded.VocabSize);
        Assert.Equal(original.MergeCount, loaded.MergeCount);
        Assert.Equal(original.EosId, loaded.EosId);
        Assert.Equal(original.PadId, loaded.PadId);
        Assert.Equal(original.EndOfGenerationIds, loaded.EndOfGenerationIds);
        foreach (var (text, expected) in QwenTokenizer.Corpus)
        {
            Assert.Equal(expected, loaded.Encode(text));
            Assert.Equal(original.Encode(text, parseSpecial: false), loaded.Encode(text, parseSpecial: false));
        }
    }

    [Fact]
    public void ByteLevelFallbackSurvivesGguf()
    {
        var original = BpeTokenizer.CreateByteLevel(512);
        var md = new GgufMetadata();
        original.WriteToGgufMetadata(md);
        var loaded = BpeTokenizer.FromGgufMetadata(md);
        Assert.Equal(512, loaded.VocabSize);
        Assert.Equal(original.Encode("héllo <|im_end|> 😀"), loaded.Encode("héllo <|im_end|> 😀"));
        Assert.Equal(TokenKind.Unused, loaded.GetTokenKind(400));
    }

    [Theory]
    [InlineData("tokenizer.ggml.model", "llama", "not supported")]
    [InlineData("tokenizer.ggml.pre", "llama-bpe", "not supported")]
    public void RejectsOtherTokenizers(string key, string value, string message)
    {
        var md = new GgufMetadata();
        BpeTokenizer.CreateByteLevel(300).WriteToGgufMetadata(md);
        md.Set(key, GgufValue.Of(value));
        var ex = Assert.Throws<InvalidDataException>(() => BpeTokenizer.FromGgufMetadata(md));
        Assert.Contains(message, ex.Message);
    }

    [Fact]
    public void RejectsBrokenMetadata()
    {
        Assert.Throws<InvalidDataException>(() => BpeTokenizer.FromGgufMetadata(new GgufMetadata()));

        var md = new GgufMetadata();
        BpeTokenizer.CreateByteLevel(300).WriteToGgufMetadata(md);
        md.Set("tokenizer.ggml.token_type", GgufValue.Of(new int[5]));
        Assert.Contains("token_type", Assert.Throws<InvalidDataException>(() => BpeTokenizer.FromGgufMetadata(md)).Message);

        BpeTokenizer.CreateByteLevel(300).WriteToGgufMetadata(md);
        md.Set("tokenizer.ggml.merges", GgufValue.Of(["a b", "x"]));
        Assert.Contains("merge 1", Assert.Throws<InvalidDataException>(() => BpeTokenizer.FromGgufMetadata(md)).Message);

        BpeTokenizer.CreateByteLevel(300).WriteToGgufMetadata(md);
        md.Set("tokenizer.ggml.merges", GgufValue.Of(["a b"]));
        Assert.Contains("not in the vocabulary", Assert.Throws<InvalidDataException>(() => BpeTokenizer.FromGgufMetadata(md)).Message);

        BpeTokenizer.CreateByteLevel(300).WriteToGgufMetadata(md);
        md.Set("tokenizer.ggml.eos_token_id", GgufValue.Of(100000u));
        Assert.Contains("eos", Assert.Throws<InvalidDataException>(() => BpeTokenizer.FromGgufMetadata(md)).Message);

        BpeTokenizer.CreateByteLevel(300).WriteToGgufMetadata(md);
        md.Set("tokenizer.ggml.tokens", GgufValue.Of(new[] { "a", "b" }));
        md.Remove("tokenizer.ggml.token_type");
        md.Remove("tokenizer.ggml.eos_token_id");
        md.Remove("tokenizer.ggml.bos_token_id");
        md.Remove("tokenizer.ggml.padding_token_id");
        Assert.Contains("byte", Assert.Throws<InvalidDataException>(() => BpeTokenizer.FromGgufMetadata(md)).Message);
    }
}
