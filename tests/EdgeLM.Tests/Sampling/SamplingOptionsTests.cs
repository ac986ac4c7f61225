using EdgeLM.Inference;

namespace EdgeLM.Tests.Sampling;

public class SamplingOptionsTests
{
    public static TheoryData<SamplingOptions, string> BadOptions => new()
    {
        { new SamplingOptions { Temperature = -0.1f }, "temperature" },
        { new SamplingOptions { Temperature = float.NaN }, "temperature" },
        { new SamplingOptions { Temperature = float.PositiveInfinity }, "temperature" },
        { new SamplingOptions { TopK = -1 }, "top-k" },
        { new SamplingOptions { TopP = 0f }, "top-p" },
        { new SamplingOptions { TopP = 1.01f }, "top-p" },
        { new SamplingOptions { TopP = float.NaN }, "top-p" },
        { new SamplingOptions { MinP = -0.01f }, "min-p" },
        { new SamplingOptions { MinP = 1f }, "min-p" },
        { new SamplingOptions { MinP = float.NaN }, "min-p" },
        { new SamplingOptions { RepetitionPenalty = 0f }, "repetition penalty" },
        { new SamplingOptions { RepetitionPenalty = -1.1f }, "repetition penalty" },
        { new SamplingOptions { RepetitionPenalty = float.NaN }, "repetition penalty" },
        { new SamplingOptions { RepetitionWindow = -1 }, "repetition window" },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void ValidateRejectsOutOfRangeValuesWithOneLineMessage(SamplingOptions options, string named)
    {
        var error = Assert.Throws<ArgumentException>(options.Validate);
        Assert.Contains(named, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void SamplerConstructorValidates() =>
        Assert.Throws<ArgumentException>(() => new Sampler(new SamplingOptions { TopP = 2f }, 10));

    [Fact]
    public void ValidateAcceptsDefaultsAndBoundaries()
    {
        new SamplingOptions().Validate();
        new SamplingOptions { Temperature = 0f, TopK = 0, TopP = 1f, MinP = 0f, RepetitionPenalty = 1f, RepetitionWindow = 0 }.Validate();
        new SamplingOptions { RepetitionPenalty = 0.5f, TopP = 1e-6f, MinP = 0.999f }.Validate();
    }

    [Fact]
    public void DefaultsMatchLlamaCpp()
    {
        var o = new SamplingOptions();
        Assert.Equal((0.8f, 40, 0.95f, 0.05f, 1.0f, 64), (o.Temperature, o.TopK, o.TopP, o.MinP, o.RepetitionPenalty, o.RepetitionWindow));
        Assert.Null(o.Seed);
    }
}
