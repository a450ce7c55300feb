// util/net: address, prefix and MAC parsing and formatting.
#include <gtest/gtest.h>

#include "util/net.h"

using namespace zw::net;

TEST(Net, ParseAddr) {
  auto v4 = parse_addr("10.70.0.11");
  ASSERT_TRUE(v4.has_value());
  EXPECT_TRUE(v4->is_v4());
  EXPECT_EQ(v4->str(), "10.70.0.11");
  EXPECT_EQ(v4->bytes[10], 0xff);
  EXPECT_EQ(v4->bytes[11], 0xff);
  EXPECT_EQ(v4->bytes[12], 10);
  EXPECT_EQ(v4->bytes[15], 11);
  auto v6 = parse_addr("FD70::11");
  ASSERT_TRUE(v6.has_value());
  EXPECT_FALSE(v6->is_v4());
  EXPECT_EQ(v6->str(), "fd70::11");
  EXPECT_EQ(v6->bytes[0], 0xfd);
  EXPECT_EQ(v6->bytes[15], 0x11);
  EXPECT_FALSE(parse_addr("::ffff:10.0.0.1").has_value());  // write IPv4 as IPv4
  for (const char* bad :
       {"", "10.0.0", "10.0.0.256", "10.0.0.1/32", "fd70:::1", "host", " 10.0.0.1"})
    EXPECT_FALSE(parse_addr(bad).has_value()) << bad;
  EXPECT_NE(*parse_addr("10.0.0.1"), *parse_addr("10.0.0.2"));
  EXPECT_LT(*parse_addr("10.0.0.1"), *parse_addr("10.0.0.2"));
}

TEST(Net, ParseCidr) {
  auto c = parse_cidr("10.70.0.192/26");
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(c->v4);
  EXPECT_EQ(c->len, 26);
  EXPECT_EQ(c->bits128(), 122);
  EXPECT_EQ(c->str(), "10.70.0.192/26");
  EXPECT_TRUE(c->contains(*parse_addr("10.70.0.192")));
  EXPECT_TRUE(c->contains(*parse_addr("10.70.0.255")));
  EXPECT_FALSE(c->contains(*parse_addr("10.70.0.191")));
  EXPECT_FALSE(c->contains(*parse_addr("fd70::c0")));
  auto c6 = parse_cidr("fd70::c0/122");
  ASSERT_TRUE(c6.has_value());
  EXPECT_FALSE(c6->v4);
  EXPECT_EQ(c6->bits128(), 122);
  EXPECT_TRUE(c6->contains(*parse_addr("fd70::ff")));
  EXPECT_FALSE(c6->contains(*parse_addr("fd70::100")));
  EXPECT_FALSE(c6->contains(*parse_addr("10.70.0.200")));
  auto all4 = parse_cidr("0.0.0.0/0");
  ASSERT_TRUE(all4.has_value());
  EXPECT_TRUE(all4->contains(*parse_addr("192.0.2.1")));
  EXPECT_FALSE(all4->contains(*parse_addr("2001:db8::1")));  // /0 of IPv4 is IPv4 only
  auto host = parse_cidr("2001:db8::1/128");
  ASSERT_TRUE(host.has_value());
  EXPECT_TRUE(host->contains(*parse_addr("2001:db8::1")));

  std::string why;
  EXPECT_FALSE(parse_cidr("10.70.0.1/24", &why).has_value());
  EXPECT_NE(why.find("host bits"), std::string::npos);
  EXPECT_FALSE(parse_cidr("10.0.0.0/33", &why).has_value());
  EXPECT_NE(why.find("0..32"), std::string::npos);
  EXPECT_FALSE(parse_cidr("fd70::/129", &why).has_value());
  EXPECT_NE(why.find("0..128"), std::string::npos);
  EXPECT_FALSE(parse_cidr("10.0.0.0", &why).has_value());
  EXPECT_NE(why.find("prefix"), std::string::npos);
  EXPECT_FALSE(parse_cidr("10.0.0.0/8x").has_value());
  EXPECT_FALSE(parse_cidr("10.0.0.0/-1").has_value());
  EXPECT_FALSE(parse_cidr("nope/8").has_value());
  EXPECT_EQ(*parse_cidr("FD70:0::C0/122"), *c6);
}

TEST(Net, ParseMac) {
  auto m = parse_mac("52:54:00:AB:cd:11");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ((*m)[0], 0x52);
  EXPECT_EQ((*m)[3], 0xab);
  EXPECT_EQ((*m)[5], 0x11);
  EXPECT_EQ(mac_str(*m), "52:54:00:ab:cd:11");
  for (const char* bad : {"", "52:54:00:ab:cd", "52:54:00:ab:cd:11:22", "52-54-00-ab-cd-11",
                          "52:54:00:ab:cd:1g", "525400abcd11", "52:54:00:ab:cd:11 "})
    EXPECT_FALSE(parse_mac(bad).has_value()) << bad;
}
