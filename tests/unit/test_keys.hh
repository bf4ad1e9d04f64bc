// Keys in the formats nvme-cli prints, made by tests/keys/make_test_keys.py (independent of
// ferry's code; its output quoted here). psk_lab is /work/shared/lab/tls-test-psk.txt, made by
// `nvme gen-tls-key`.
#pragma once

namespace ferry::test_keys {
inline constexpr const char* dhchap_00_32 = "DHHC-1:00:ICcuNTxDSlFYX2ZtdHuCiZCXnqWss7rByM/W3eTr8vmMpzdS:";
inline constexpr const char* dhchap_01_32 = "DHHC-1:01:LTQ7QklQV15lbHN6gYiPlp2kq7K5wMfO1dzj6vH4/waaxGQ3:";
inline constexpr const char* dhchap_02_48 =
    "DHHC-1:02:SlFYX2ZtdHuCiZCXnqWss7rByM/W3eTr8vkABw4VHCMqMTg/Rk1UW2JpcHd+hYyTluJeTQ==:";
inline constexpr const char* dhchap_03_64 =
    "DHHC-1:03:Z251fIOKkZifpq20u8LJ0Nfe5ezz+gEIDxYdJCsyOUBHTlVcY2pxeH+GjZSboqmwt77FzNPa4ejv9v0ECxIZIHqB9Pc=:";
inline constexpr const char* dhchap_01_32_b = "DHHC-1:01:lZyjqrG4v8bN1Nvi6fD3/gUMExohKC82PURLUllgZ2456OPa:";
inline constexpr const char* dhchap_03_64_b =
    "DHHC-1:03:wsnQ197l7PP6AQgPFh0kKzI5QEdOVVxjanF4f4aNlJuiqbC3vsXM09rh6O/2/QQLEhkgJy41PENKUVhfZm10exDx8fA=:";
inline constexpr const char* psk_01_32 = "NVMeTLSkey-1:01:VFtiaXB3foWMk5qhqK+2vcTL0tng5+71/AMKERgfJi3wXMMW:";
inline constexpr const char* psk_02_48 =
    "NVMeTLSkey-1:02:cXh/ho2Um6KpsLe+xczT2uHo7/b9BAsSGSAnLjU8Q0pRWF9mbXR7gomQl56lrLO6M8QgvA==:";
inline constexpr const char* psk_01_32_b = "NVMeTLSkey-1:01:r7a9xMvS2eDn7vX8AwoRGB8mLTQ7QklQV15lbHN6gYgCOtXd:";
inline constexpr const char* psk_lab = "NVMeTLSkey-1:01:xVClyHM7/Vjg/SafWM8HIejVsU3cf9i//WB1DL4nCJ6PgSKJ:";
}  // namespace ferry::test_keys
