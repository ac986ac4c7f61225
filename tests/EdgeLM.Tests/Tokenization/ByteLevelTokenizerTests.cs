using System.Text;
using EdgeLM.Tokenization;

namespace EdgeLM.Tests.Tokenization;

public class ByteLevelTokenizerTests
{
    [Fact]
    public void LayoutIsBytesThenChatTokensThenUnused()
    {
        var t = BpeTokenizer.CreateByteLevel(1000);
        Assert.Equal(1000, t.VocabSize);
        for (int b = 0; b < 256; b++) Assert.Equal(new[] { (byte)b }, t.TokenBytes(b));
        Assert.Equal(256, t.TokenId("<|endoftext|>"));
        Assert.Equal(257, t.TokenId("<|im_start|>"));
        Assert.Equal(258, t.TokenId("<|im_end|>"));
        Assert.True(t.IsSpecial(257));
        Assert.Equal(TokenKind.Unused, t.GetTokenKind(999));
        Assert.Empty(t.TokenBytes(999));
        Assert.Equal(258, t.EosId);
        Assert.Equal([258, 256], t.EndOfGenerationIds);
        Assert.Equal([65, 257, 66], t.Encode("A<|im_start|>B"));
        Assert.Throws<ArgumentOutOfRangeException>(() => BpeTokenizer.CreateByteLevel(258));
    }

    [Fact]
    public void RoundTripsRandomText()
    {
        var t = BpeTokenizer.CreateByteLevel(300);
        var random = new Random(5);
        for (int trial = 0; trial < 500; trial++)
        {
            var sb = new StringBuilder();
            int n = random.Next(40);
            for (int i = 0; i < n; i++)
            {
                int cp = random.Next(4) switch
                {
                    0 => random.Next(0x20, 0x7F),
                    1 => random.Next(0, 0x20),
                    2 => random.Next(0xA0, 0xD800),
                    _ => random.Next(0x10000, 0x110000),
                };
                sb.Append(char.ConvertFromUtf32(cp));
            }
            string text = sb.ToString();
            int[] ids = t.Encode(text, parseSpecial: false);
            Assert.Equal(Encoding.UTF8.GetByteCount(text.Normalize(NormalizationForm.FormC)), ids.Length);
            Assert.Equal(text.Normalize(NormalizationForm.FormC), t.Decode(ids));
        }
    }
}
