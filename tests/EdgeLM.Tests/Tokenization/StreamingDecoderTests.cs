using EdgeLM.Tokenization;

namespace EdgeLM.Tests.Tokenization;

public class StreamingDecoderTests
{
    private static BpeTokenizer Qwen => QwenTokenizer.Instance;

    [Fact]
    public void MatchesOneShotDecodeForEveryPrefix()
    {
        foreach (var (_, ids) in QwenTokenizer.Corpus)
        {
            var decoder = Qwen.CreateStreamingDecoder();
            string streamed = "";
            for (int i = 0; i < ids.Length; i++)
            {
                streamed += decoder.Push(ids[i]);
                // What has been emitted is never more than the one-shot decode of the prefix (held-back bytes excepted).
                string prefix = Qwen.Decode(ids.AsSpan(0, i + 1));
                Assert.StartsWith(streamed, prefix);
                Assert.True(prefix.Length - streamed.Length <= 1, "held back more than one character");
            }
            streamed += decoder.Flush();
            Assert.Equal(Qwen.Decode(ids), streamed);
        }
    }

    [Fact]
    public void HoldsBackSplitCharacterUntilComplete()
    {
        var byteLevel = BpeTokenizer.CreateByteLevel(300);
        int[] ids = byteLevel.Encode("a😀b");
        Assert.Equal(6, ids.Length);
        var decoder = byteLevel.CreateStreamingDecoder();
        Assert.Equal("a", decoder.Push(ids[0]));
        Assert.Equal("", decoder.Push(ids[1]));
        Assert.Equal("", decoder.Push(ids[2]));
        Assert.Equal("", decoder.Push(ids[3]));
        Assert.Equal("😀", decoder.Push(ids[4]));
        Assert.Equal("b", decoder.Push(ids[5]));
        Assert.Equal("", decoder.Flush());
    }

    [Fact]
    public void InvalidAndTruncatedBytesMatchOneShotDecode()
    {
        var byteLevel = BpeTokenizer.CreateByteLevel(300);
        var random = new Random(99);
        byte[] interesting = [0x41, 0x80, 0xBF, 0xC2, 0xC0, 0xE0, 0xE4, 0xED, 0xA0, 0xF0, 0x90, 0x9F, 0xF4, 0xF5, 0xFF, 0x0A];
        for (int trial = 0; trial < 500; trial++)
        {
            int[] ids = Enumerable.Range(0, 1 + random.Next(12)).Select(_ => (int)interesting[random.Next(interesting.Length)]).ToArray();
            var decoder = byteLevel.CreateStreamingDecoder();
            string streamed = string.Concat(ids.Select(decoder.Push)) + decoder.Flush();
            Assert.Equal(byteLevel.Decode(ids), streamed);
        }
    }
}
