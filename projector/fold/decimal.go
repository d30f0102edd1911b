package fold

import (
	"math/big"
	"strconv"
	"strings"

	"github.com/callreport/callreport/schema"
)

// sum adds decimal numbers exactly and writes the result in plain decimal
// notation without trailing fractional zeros ("0.1" + "0.2" is "0.3"). The
// decoder has bounded every number's length and exponent.
func sum(nums []schema.Number) schema.Number {
	total, scale := new(big.Int), 0
	for _, n := range nums {
		m, s := parseDecimal(string(n))
		switch {
		case s > scale:
			total.Mul(total, pow10(s-scale))
			scale = s
		case s < scale:
			m.Mul(m, pow10(scale-s))
		}
		total.Add(total, m)
	}
	return schema.Number(formatDecimal(total, scale))
}

// parseDecimal turns a JSON number into mantissa × 10^-scale, scale ≥ 0.
func parseDecimal(s string) (*big.Int, int) {
	exp := 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		exp, _ = strconv.Atoi(s[i+1:])
		s = s[:i]
	}
	scale := 0
	if i := strings.IndexByte(s, '.'); i >= 0 {
		scale = len(s) - i - 1
		s = s[:i] + s[i+1:]
	}
	m, _ := new(big.Int).SetString(s, 10)
	if m == nil {
		m = new(big.Int)
	}
	scale -= exp
	if scale < 0 {
		m.Mul(m, pow10(-scale))
		scale = 0
	}
	return m, scale
}

func pow10(n int) *big.Int {
	return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
}

func formatDecimal(m *big.Int, scale int) string {
	neg := m.Sign() < 0
	digits := new(big.Int).Abs(m).String()
	if scale > 0 {
		if len(digits) <= scale {
			digits = strings.Repeat("0", scale-len(digits)+1) + digits
		}
		digits = digits[:len(digits)-scale] + "." + digits[len(digits)-scale:]
		digits = strings.TrimRight(strings.TrimRight(digits, "0"), ".")
	}
	if neg && digits != "0" {
		return "-" + digits
	}
	return digits
}

// negate is -n.
func negate(n schema.Number) schema.Number {
	if s, ok := strings.CutPrefix(string(n), "-"); ok {
		return schema.Number(s)
	}
	return "-" + n
}

// Sum adds decimal numbers exactly, as billing's totalCost does; "" counts
// as 0.
func Sum(nums ...schema.Number) schema.Number {
	var in []schema.Number
	for _, n := range nums {
		if n != "" {
			in = append(in, n)
		}
	}
	return sum(in)
}

// Negate is -n.
func Negate(n schema.Number) schema.Number {
	if n == "" {
		return ""
	}
	return negate(n)
}
