// How librbd results become NVMe statuses (nvme/rbd_status.cc; built without Ceph too).
#include <gtest/gtest.h>

#include <cerrno>

#include "nvme/block_queue.hh"

using namespace ferry;

TEST(rbd_status, a_fenced_or_vanished_image_is_a_path_error_the_host_may_retry_elsewhere) {
    for (int err : {-ENOENT, -ESHUTDOWN /* EBLOCKLISTED */, -ENOTCONN, -ETIMEDOUT})
        for (uint8_t op : {nvme::io_opc::read, nvme::io_opc::write, nvme::io_opc::flush}) {
            const uint16_t s = nvme::rbd_error_status(err, op);
            EXPECT_EQ(s, nvme::sc::controller_path_error) << err;
            EXPECT_EQ(s & nvme::status_dnr, 0) << err;  // DNR would stop a multipath host's failover
        }
}

TEST(rbd_status, media_errors_by_command_and_a_full_pool) {
    EXPECT_EQ(nvme::rbd_error_status(-EIO, nvme::io_opc::read), nvme::sc::unrecovered_read_error);
    EXPECT_EQ(nvme::rbd_error_status(-EIO, nvme::io_opc::compare), nvme::sc::unrecovered_read_error);
    EXPECT_EQ(nvme::rbd_error_status(-EIO, nvme::io_opc::write), nvme::sc::write_fault);
    EXPECT_EQ(nvme::rbd_error_status(-EIO, nvme::io_opc::write_zeroes), nvme::sc::write_fault);
    EXPECT_EQ(nvme::rbd_error_status(-EIO, nvme::io_opc::flush), nvme::sc::internal_error);
    EXPECT_EQ(nvme::rbd_error_status(-ENOSPC, nvme::io_opc::write), nvme::sc::capacity_exceeded | nvme::status_dnr);
    EXPECT_EQ(nvme::rbd_error_status(-EDQUOT, nvme::io_opc::write), nvme::sc::capacity_exceeded | nvme::status_dnr);
    EXPECT_EQ(nvme::rbd_error_status(-EROFS, nvme::io_opc::write), nvme::sc::write_fault | nvme::status_dnr);
}

TEST(rbd_status, out_of_memory_is_an_internal_error_not_a_media_error) {
    for (uint8_t op : {nvme::io_opc::read, nvme::io_opc::compare, nvme::io_opc::write, nvme::io_opc::write_zeroes,
                       nvme::io_opc::flush, nvme::io_opc::dataset_mgmt})
        EXPECT_EQ(nvme::rbd_error_status(-ENOMEM, op), nvme::sc::internal_error) << +op;
}
